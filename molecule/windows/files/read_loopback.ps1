# Read by molecule/windows/takeover.yml: the state of one adapter (by
# interface GUID) that state=absent must give back as it was.
param([string]$Guid, [string]$Gateway)
$ErrorActionPreference = 'Stop'
$a = Get-NetAdapter -IncludeHidden | Where-Object { [string]$_.InterfaceGuid -eq $Guid }
$routes = [ordered]@{}
foreach ($store in @('ActiveStore', 'PersistentStore')) {
    $routes[$store] = @(Get-NetRoute -InterfaceIndex $a.ifIndex -DestinationPrefix '0.0.0.0/0' -PolicyStore $store -ErrorAction SilentlyContinue |
            Where-Object { $_.NextHop -eq $Gateway } | ForEach-Object { [int]$_.RouteMetric })
}
$i = Get-NetIPInterface -InterfaceIndex $a.ifIndex -AddressFamily IPv4
[ordered]@{
    present = [bool]$a
    name = [string]$a.Name
    routes = $routes
    interface_metric = [int]$i.InterfaceMetric
    automatic_metric = [string]$i.AutomaticMetric
    weak_host_send = [string]$i.WeakHostSend
    weak_host_receive = [string]$i.WeakHostReceive
    register_dns = [bool](Get-DnsClient -InterfaceIndex $a.ifIndex).RegisterThisConnectionsAddress
    records = (Test-Path -LiteralPath 'HKLM:\SOFTWARE\dsrprov')
}
