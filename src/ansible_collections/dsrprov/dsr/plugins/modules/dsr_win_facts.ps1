#!powershell

# Read-only preflight of the dsr_realserver_windows role: OS build,
# administrator rights, which adapter is "the network adapter", and the
# host's own addresses (for the VIP rules). It never changes anything, so it
# runs the same in check mode, and it answers before any other step runs.

#AnsibleRequires -CSharpUtil Ansible.Basic

$spec = @{
    options = @{
        network_adapter = @{ type = 'str'; default = '' }
        network_name = @{ type = 'str'; default = '' }
        connect_address = @{ type = 'str'; default = '' }
        loopback_hardware_id = @{ type = 'str'; default = '*MSLOOP' }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$module.Result.changed = $false

$osVersion = [System.Environment]::OSVersion.Version
$module.Result.os_build = [int]$osVersion.Build
$module.Result.os_version = $osVersion.ToString()
$module.Result.os_caption = ''
$module.Result.powershell_version = $PSVersionTable.PSVersion.ToString()

$identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object -TypeName System.Security.Principal.WindowsPrincipal -ArgumentList $identity
$module.Result.is_admin = [bool]$principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
$module.Result.user = $identity.Name

$module.Result.network_adapter = $null
$module.Result.host_addresses = @()
$module.Result.loopback_adapters = @()

# Windows Server 2016 is build 14393, the oldest the role (and Ansible)
# supports. On anything older read nothing more (2008 R2 has no NetAdapter
# cmdlets at all): return what we know, the role turns it into a clear error.
$module.Result.minimum_build = 14393
if ($module.Result.os_build -lt $module.Result.minimum_build) {
    $module.ExitJson()
}

try {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem -ErrorAction Stop
    $module.Result.os_caption = [string]$os.Caption
}
catch {
    $module.Result.os_caption = ''
}

$loopbackId = $module.Params.loopback_hardware_id
$adapters = @(Get-NetAdapter -IncludeHidden -ErrorAction SilentlyContinue)

function Test-LoopbackAdapter {
    param($Adapter)
    # MSFT_NetAdapter.ComponentID is the hardware id ('*msloop'); the driver
    # description is what Device Manager shows. Either one identifies it.
    return (([string]$Adapter.ComponentID) -ieq $loopbackId) -or
    (([string]$Adapter.DriverDescription) -like 'Microsoft KM-TEST Loopback Adapter*') -or
    (([string]$Adapter.InterfaceDescription) -like 'Microsoft KM-TEST Loopback Adapter*')
}

$loopbackIndexes = @()
$loopbacks = @()
foreach ($adapter in $adapters) {
    if (Test-LoopbackAdapter -Adapter $adapter) {
        $loopbackIndexes += [int]$adapter.ifIndex
        $loopbacks += @{
            name = [string]$adapter.Name
            interface_index = [int]$adapter.ifIndex
            interface_guid = [string]$adapter.InterfaceGuid
            pnp_device_id = [string]$adapter.PnPDeviceID
            description = [string]$adapter.InterfaceDescription
        }
    }
}
$module.Result.loopback_adapters = $loopbacks

# The host's own addresses, except those on KM-TEST loopback adapters: those
# are the VIPs a previous run put there, not addresses the host "uses".
$hostAddresses = @()
foreach ($ip in @(Get-NetIPAddress -ErrorAction SilentlyContinue)) {
    if ($loopbackIndexes -notcontains [int]$ip.InterfaceIndex) {
        $hostAddresses += ([string]$ip.IPAddress -split '%')[0]
    }
}
$module.Result.host_addresses = @($hostAddresses | Sort-Object -Unique)

function ConvertTo-AdapterInfo {
    param($Adapter, [string]$How)
    return @{
        name = [string]$Adapter.Name
        interface_index = [int]$Adapter.ifIndex
        interface_guid = [string]$Adapter.InterfaceGuid
        description = [string]$Adapter.InterfaceDescription
        selected_by = $How
    }
}

$candidates = @($adapters | Where-Object { -not (Test-LoopbackAdapter -Adapter $_) })
$selected = $null
$wantedName = $module.Params.network_adapter
$newName = $module.Params.network_name

# 1. By name, as configured. After a rename by this role the old name is
#    gone, so the new name is accepted as well (a re-run stays idempotent).
if ($wantedName) {
    $byName = @($candidates | Where-Object { $_.Name -eq $wantedName })
    if ($byName.Count -eq 0 -and $newName) {
        $byName = @($candidates | Where-Object { $_.Name -eq $newName })
    }
    if ($byName.Count -eq 0) {
        $names = ($candidates | ForEach-Object { $_.Name }) -join ', '
        $module.FailJson("no network adapter named '$wantedName' (adapters: $names); set dsr_realserver_windows_network_adapter to one of them. Nothing was changed.")
    }
    $selected = ConvertTo-AdapterInfo -Adapter $byName[0] -How 'name'
}

# 2. The adapter holding the address Ansible connects to.
if (-not $selected -and $module.Params.connect_address) {
    $parsed = $null
    if ([System.Net.IPAddress]::TryParse($module.Params.connect_address, [ref]$parsed)) {
        $ip = @(Get-NetIPAddress -IPAddress $parsed.ToString() -ErrorAction SilentlyContinue)
        if ($ip.Count -gt 0) {
            $match = @($candidates | Where-Object { $_.ifIndex -eq $ip[0].InterfaceIndex })
            if ($match.Count -gt 0) {
                $selected = ConvertTo-AdapterInfo -Adapter $match[0] -How 'connect_address'
            }
        }
    }
}

# 3. The adapter carrying the default route with the lowest total metric
#    (route metric + interface metric), IPv4 first, then IPv6.
if (-not $selected) {
    foreach ($prefix in @('0.0.0.0/0', '::/0')) {
        $best = $null
        $bestMetric = [int]::MaxValue
        foreach ($route in @(Get-NetRoute -DestinationPrefix $prefix -ErrorAction SilentlyContinue)) {
            $match = @($candidates | Where-Object { $_.ifIndex -eq $route.InterfaceIndex })
            if ($match.Count -eq 0) { continue }
            $ifMetric = 0
            $ipIf = Get-NetIPInterface -InterfaceIndex $route.InterfaceIndex -AddressFamily $route.AddressFamily -ErrorAction SilentlyContinue
            if ($ipIf) { $ifMetric = [int]$ipIf.InterfaceMetric }
            $total = [int]$route.RouteMetric + $ifMetric
            if ($total -lt $bestMetric) {
                $bestMetric = $total
                $best = $match[0]
            }
        }
        if ($best) {
            $selected = ConvertTo-AdapterInfo -Adapter $best -How 'default_route'
            break
        }
    }
}

$module.Result.network_adapter = $selected
$module.ExitJson()
