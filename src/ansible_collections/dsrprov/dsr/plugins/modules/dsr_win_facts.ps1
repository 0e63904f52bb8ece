#!powershell

# Read-only preflight of the dsr_realserver_windows role: OS build,
# administrator rights, which adapter is "the network adapter", and the
# host's own addresses (for the VIP rules). It never changes anything, so it
# runs the same in check mode, and it answers before any other step runs.
# A failed read stops it (only CIM's "not found" counts as none): a query
# that failed must not look like "no address" and let a VIP through.

#AnsibleRequires -CSharpUtil Ansible.Basic

$spec = @{
    options = @{
        network_adapter = @{ type = 'str'; default = '' }
        network_name = @{ type = 'str'; default = '' }
        connect_address = @{ type = 'str'; default = '' }
        loopback_hardware_id = @{ type = 'str'; default = '*MSLOOP' }
        loopback_name = @{ type = 'str'; default = 'loopback' }
        registry_key = @{ type = 'str'; default = 'HKLM:\SOFTWARE\dsrprov' }
        vips = @{ type = 'list'; elements = 'str'; default = @() }
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

function Invoke-Read {
    # One read; "not found" is an empty answer, any other failure stops.
    param([string]$ReadWhat, [scriptblock]$ReadBlock)
    # Output is streamed, not returned as one array, so that a pipe after
    # it sees each object; callers wrap it in @() where they count.
    try {
        & $ReadBlock
    }
    catch {
        if ($_.CategoryInfo.Category -eq 'ObjectNotFound') { return }
        $module.FailJson("could not read ${ReadWhat}: $($_.Exception.Message). Nothing was changed.", $_)
    }
}

$loopbackId = $module.Params.loopback_hardware_id
$adapters = @(Invoke-Read -ReadWhat 'the network adapters' -ReadBlock { Get-NetAdapter -IncludeHidden -ErrorAction Stop })

function Test-LoopbackAdapter {
    param($Adapter)
    # MSFT_NetAdapter.ComponentID is the hardware id ('*msloop'), the same
    # in every language (the description is translated).
    return (([string]$Adapter.ComponentID) -ieq $loopbackId)
}

$loopbacks = @()
foreach ($adapter in $adapters) {
    if (Test-LoopbackAdapter -Adapter $adapter) {
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

# Which KM-TEST adapter the role will use (dsr_win_loopback follows this
# choice through its interface_guid option): the one with the wanted name,
# the one the role created (marker: instance id and interface GUID), the one
# holding a wanted VIP, else the lowest interface index.
$marker = @{ instance_id = ''; interface_guid = '' }
if (Test-Path -LiteralPath $module.Params.registry_key) {
    $props = Get-ItemProperty -LiteralPath $module.Params.registry_key -ErrorAction Stop
    $names = @($props.PSObject.Properties.Name)
    if ($names -contains 'LoopbackCreatedByRole' -and [int]$props.LoopbackCreatedByRole -eq 1) {
        if ($names -contains 'LoopbackInstanceId') { $marker.instance_id = [string]$props.LoopbackInstanceId }
        if ($names -contains 'LoopbackInterfaceGuid') { $marker.interface_guid = [string]$props.LoopbackInterfaceGuid }
    }
}
$allAddresses = @(Invoke-Read -ReadWhat 'the IP addresses' -ReadBlock { Get-NetIPAddress -ErrorAction Stop })
$wantedVips = @($module.Params.vips | ForEach-Object {
        $parsedVip = $null
        if ([System.Net.IPAddress]::TryParse((($_ -split '/')[0]).Trim(), [ref]$parsedVip)) { $parsedVip.ToString() }
    })
$sortedLoopbacks = @($loopbacks | Sort-Object -Property { $_.interface_index })
$chosen = $null
$rules = @(
    @{ how = 'name'; test = { param($l) $l.name -eq $module.Params.loopback_name } },
    @{ how = 'marker'; test = { param($l) $marker.instance_id -and $l.pnp_device_id -eq $marker.instance_id -and (-not $marker.interface_guid -or $l.interface_guid -eq $marker.interface_guid) } },
    @{ how = 'vip'; test = { param($l) @($allAddresses | Where-Object { [int]$_.InterfaceIndex -eq $l.interface_index -and $wantedVips -contains (([string]$_.IPAddress -split '%')[0]) }).Count -gt 0 } },
    @{ how = 'first'; test = { param($l) $true } }
)
foreach ($rule in $rules) {
    $hit = @($sortedLoopbacks | Where-Object { & $rule.test $_ })
    if ($hit.Count -gt 0) {
        $chosen = $hit[0].Clone()
        $chosen.selected_by = $rule.how
        break
    }
}
$module.Result.loopback = $chosen

# The host's own addresses, except those on the chosen KM-TEST loopback:
# those are the VIPs a previous run put there. Addresses on any other
# loopback count: a VIP there is a conflict the preflight must see.
$hostAddresses = @()
foreach ($ip in $allAddresses) {
    if (-not $chosen -or [int]$ip.InterfaceIndex -ne $chosen.interface_index) {
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
        $ip = @($allAddresses | Where-Object { (([string]$_.IPAddress -split '%')[0]) -eq $parsed.ToString() })
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
        foreach ($route in @(Invoke-Read -ReadWhat "the routes to $prefix" -ReadBlock { Get-NetRoute -DestinationPrefix $prefix -ErrorAction Stop })) {
            $match = @($candidates | Where-Object { $_.ifIndex -eq $route.InterfaceIndex })
            if ($match.Count -eq 0) { continue }
            $ifMetric = 0
            $ipIf = @(Invoke-Read -ReadWhat "the IP interface $($route.InterfaceIndex)" -ReadBlock { Get-NetIPInterface -InterfaceIndex $route.InterfaceIndex -AddressFamily $route.AddressFamily -ErrorAction Stop })
            if ($ipIf.Count -gt 0) { $ifMetric = [int]$ipIf[0].InterfaceMetric }
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
