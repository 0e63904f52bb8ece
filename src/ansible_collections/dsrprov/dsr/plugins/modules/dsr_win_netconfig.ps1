#!powershell

# dsr_win_netconfig: VIPs on the KM-TEST loopback, metric, weak host model,
# DNS registration, and the optional network adapter rename. See
# dsr_win_netconfig.py for the documentation.
#
# Cmdlets followed (NetTCPIP / DnsClient modules, Windows Server 2012+):
#   New-NetIPAddress -InterfaceIndex -IPAddress -PrefixLength 32|128 -SkipAsSource $true
#     https://learn.microsoft.com/powershell/module/nettcpip/new-netipaddress
#     (no -DefaultGateway: the loopback gets no gateway; adding a static
#     address to a DHCP interface turns DHCP off, we also do it explicitly)
#   Set-NetIPAddress -SkipAsSource $true
#     https://learn.microsoft.com/powershell/module/nettcpip/set-netipaddress
#   Set-NetIPInterface -AddressFamily IPv4|IPv6 -InterfaceMetric -WeakHostSend -WeakHostReceive -Dhcp
#     https://learn.microsoft.com/powershell/module/nettcpip/set-netipinterface
#     (NetworkingDsc NetIPInterface notes that a given InterfaceMetric makes
#     the cmdlet ignore AutomaticMetric: setting the metric turns automatic
#     metric off, so AutomaticMetric is only set on its own.)
#   Set-DnsClient -InterfaceIndex -RegisterThisConnectionsAddress $false
#     https://learn.microsoft.com/powershell/module/dnsclient/set-dnsclient
#   Remove-NetIPAddress -InterfaceIndex -IPAddress -PolicyStore ActiveStore|PersistentStore
#     https://learn.microsoft.com/powershell/module/nettcpip/remove-netipaddress
#     (-PolicyStore defaults to ActiveStore, and unlike New-NetIPAddress the
#     page does not say both stores are written: a VIP is removed from each
#     store that holds it, read store by store, or it could come back at
#     the next boot)
#   Get-NetAdapter / Rename-NetAdapter: -Name takes wildcards
#     https://learn.microsoft.com/powershell/module/netadapter/rename-netadapter
#     ("Rename-NetAdapter -Name "E*t""): adapters are found by interface
#     index or GUID, names compared with -eq, renames done by piping the
#     adapter object (the InputObject parameter set).
#   Get-NetRoute / Remove-NetRoute / New-NetRoute -PolicyStore ActiveStore|PersistentStore
#     https://learn.microsoft.com/powershell/module/nettcpip/new-netroute
#     (a gateway typed into the adapter's properties is a route in both
#     stores; each store is read, removed and put back on its own)
#
# Every value this module changes on an adapter the role did not create is
# first recorded under <registry_key>\prior\<interface guid>, so that
# state=absent puts back exactly what was there (and nothing else). On a
# loopback taken over from a manual setup that includes its name (recorded
# by dsr_win_loopback) and the default routes removed from it
# (DefaultRoutes, one "family|prefix|next hop|metric|stores" per route).

#AnsibleRequires -CSharpUtil Ansible.Basic

$spec = @{
    options = @{
        state = @{ type = 'str'; choices = @('present', 'absent'); default = 'present' }
        vips = @{ type = 'list'; elements = 'str'; default = @() }
        loopback_name = @{ type = 'str'; default = 'loopback' }
        loopback_pending = @{ type = 'bool'; default = $false }
        network_interface_index = @{ type = 'int' }
        network_name = @{ type = 'str'; default = '' }
        metric = @{ type = 'int'; default = 254 }
        registry_key = @{ type = 'str'; default = 'HKLM:\SOFTWARE\dsrprov' }
        loopback_interface_guid = @{ type = 'str'; default = '' }
        wait_seconds = @{ type = 'int'; default = 60 }
    }
    required_if = @(
        , @('state', 'present', @('network_interface_index'))
    )
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)

$state = $module.Params.state
$loopbackName = $module.Params.loopback_name
$metric = $module.Params.metric
$regKey = $module.Params.registry_key
$priorRoot = "$regKey\prior"
$check = $module.CheckMode
$module.Result.changed = $false
$module.Result.actions = [System.Collections.ArrayList]@()

function Invoke-Read {
    # One read. "Not found" (CIM's ObjectNotFound) is an empty answer; any
    # other failure stops the module naming what was read: a failed query
    # must never pass for "no address", "no route" or "no adapter".
    param([string]$ReadWhat, [scriptblock]$ReadBlock)
    # Output is streamed, not returned as one array, so that a pipe after
    # it sees each object; callers wrap it in @() where they count.
    try {
        & $ReadBlock
    }
    catch {
        if ($_.CategoryInfo.Category -eq 'ObjectNotFound') { return }
        $module.FailJson("could not read ${ReadWhat}: $($_.Exception.Message)", $_)
    }
}

function Add-Action {
    param([string]$Text)
    $module.Result.changed = $true
    [void]$module.Result.actions.Add($Text)
}

# --- VIPs ------------------------------------------------------------------
$vips = [ordered]@{}
foreach ($raw in $module.Params.vips) {
    $parsed = $null
    $bare = ($raw -split '/')[0].Trim()
    if (-not [System.Net.IPAddress]::TryParse($bare, [ref]$parsed)) {
        $module.FailJson("invalid VIP '$raw'")
    }
    $isV6 = $parsed.AddressFamily -eq [System.Net.Sockets.AddressFamily]::InterNetworkV6
    $vips[$parsed.ToString()] = @{
        family = $(if ($isV6) { 'IPv6' } else { 'IPv4' })
        prefix = $(if ($isV6) { 128 } else { 32 })
    }
}
$families = @('IPv4')
if (@($vips.Values | Where-Object { $_.family -eq 'IPv6' }).Count -gt 0) {
    $families += 'IPv6'
}

# --- registry helpers --------------------------------------------------------
function Get-RecordedVips {
    if (Test-Path -LiteralPath $regKey) {
        $p = Get-ItemProperty -LiteralPath $regKey -ErrorAction Stop
        if ($p -and ($p.PSObject.Properties.Name -contains 'Vips')) {
            return @($p.Vips)
        }
    }
    return @()
}

function Set-RecordedVips {
    param([string[]]$List)
    if ($check) { return }
    if ($List.Count -eq 0) {
        if (Test-Path -LiteralPath $regKey) {
            $p = Get-ItemProperty -LiteralPath $regKey -ErrorAction Stop
            if ($p.PSObject.Properties.Name -contains 'Vips') {
                Remove-ItemProperty -LiteralPath $regKey -Name 'Vips' -ErrorAction Stop
            }
        }
        return
    }
    if (-not (Test-Path -LiteralPath $regKey)) { New-Item -Path $regKey -Force | Out-Null }
    New-ItemProperty -LiteralPath $regKey -Name 'Vips' -Value $List -PropertyType MultiString -Force | Out-Null
}

function Save-Prior {
    # Record the value found before our first change; never overwrite.
    param([string]$Guid, [string]$Name, [string]$Value)
    if ($check -or -not $Guid) { return }
    $key = "$priorRoot\$Guid"
    if (-not (Test-Path -LiteralPath $key)) { New-Item -Path $key -Force | Out-Null }
    $existing = Get-ItemProperty -LiteralPath $key -ErrorAction Stop
    if ($existing -and ($existing.PSObject.Properties.Name -contains $Name)) { return }
    New-ItemProperty -LiteralPath $key -Name $Name -Value $Value -PropertyType String -Force | Out-Null
}

function Test-CreatedLoopback {
    # Whether dsr_win_loopback's marker names this adapter: instance id and,
    # once recorded, interface GUID (an instance id can be reused).
    param($Adapter)
    if (-not (Test-Path -LiteralPath $regKey)) { return $false }
    $p = Get-ItemProperty -LiteralPath $regKey -ErrorAction Stop
    $names = @($p.PSObject.Properties.Name)
    if (-not ($names -contains 'LoopbackCreatedByRole') -or [int]$p.LoopbackCreatedByRole -ne 1) { return $false }
    if ([string]$Adapter.PnPDeviceID -ne [string]$p.LoopbackInstanceId) { return $false }
    return (-not ($names -contains 'LoopbackInterfaceGuid') -or [string]$Adapter.InterfaceGuid -eq [string]$p.LoopbackInterfaceGuid)
}

# --- state readers -----------------------------------------------------------
function Get-IfState {
    param([int]$Index, [string]$Family)
    $found = @(Invoke-Read -ReadWhat "the $Family interface of interface index $Index" -ReadBlock { Get-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -ErrorAction Stop })
    if ($found.Count -eq 0) { return $null }
    $ipIf = $found[0]
    return [ordered]@{
        interface_metric = [int]$ipIf.InterfaceMetric
        automatic_metric = [string]$ipIf.AutomaticMetric
        weak_host_send = [string]$ipIf.WeakHostSend
        weak_host_receive = [string]$ipIf.WeakHostReceive
        dhcp = [string]$ipIf.Dhcp
    }
}

function Get-LoopbackAddresses {
    param([int]$Index)
    $out = [ordered]@{}
    $read = @(Invoke-Read -ReadWhat "the addresses of interface index $Index" -ReadBlock { Get-NetIPAddress -InterfaceIndex $Index -ErrorAction Stop })
    foreach ($ip in @($read | Sort-Object -Property IPAddress)) {
        $addr = ([string]$ip.IPAddress -split '%')[0]
        # Link-local addresses (fe80::/10, 169.254/16) are the system's own.
        if ($addr -like 'fe80:*' -or $addr -like '169.254.*') { continue }
        $out[$addr] = [ordered]@{ prefix_length = [int]$ip.PrefixLength; skip_as_source = [bool]$ip.SkipAsSource }
    }
    return $out
}

function Get-DefaultRoutes {
    param([int]$Index)
    return @(Invoke-Read -ReadWhat "the routes of interface index $Index" -ReadBlock { Get-NetRoute -InterfaceIndex $Index -ErrorAction Stop } |
            Where-Object { $_.DestinationPrefix -eq '0.0.0.0/0' -or $_.DestinationPrefix -eq '::/0' } |
            ForEach-Object { "$($_.DestinationPrefix) via $($_.NextHop)" })
}

function Get-DefaultRouteRecords {
    # The default routes of an interface, one record per route with the
    # policy stores that hold it: "IPv4|0.0.0.0/0|192.0.2.1|0|ActiveStore,PersistentStore".
    param([int]$Index)
    $byRoute = [ordered]@{}
    foreach ($store in @('ActiveStore', 'PersistentStore')) {
        foreach ($route in @(Invoke-Read -ReadWhat "the routes of interface index $Index ($store)" -ReadBlock { Get-NetRoute -InterfaceIndex $Index -PolicyStore $store -ErrorAction Stop } |
                    Where-Object { $_.DestinationPrefix -eq '0.0.0.0/0' -or $_.DestinationPrefix -eq '::/0' })) {
            $key = "$($route.AddressFamily)|$($route.DestinationPrefix)|$($route.NextHop)"
            if (-not $byRoute.Contains($key)) {
                $byRoute[$key] = @{ metric = [int]$route.RouteMetric; stores = @() }
            }
            $byRoute[$key].stores += $store
        }
    }
    return @($byRoute.Keys | ForEach-Object { "$_|$($byRoute[$_].metric)|$($byRoute[$_].stores -join ',')" })
}

function ConvertFrom-RouteRecord {
    param([string]$Record)
    $family, $prefix, $nextHop, $routeMetric, $stores = $Record -split '\|', 5
    return @{
        family = $family
        prefix = $prefix
        next_hop = $nextHop
        metric = [int]$routeMetric
        stores = @($stores -split ',' | Where-Object { $_ })
        key = "$family|$prefix|$nextHop"
    }
}

function Add-PriorRoute {
    # Record a default route before removing it. Unlike Save-Prior, records
    # accumulate: a route added by hand after the first run is kept as well;
    # the first record of a route wins.
    param([string]$Guid, [string]$Record)
    if ($check -or -not $Guid) { return }
    $key = "$priorRoot\$Guid"
    if (-not (Test-Path -LiteralPath $key)) { New-Item -Path $key -Force | Out-Null }
    $existing = Get-ItemProperty -LiteralPath $key -ErrorAction Stop
    $list = @()
    if ($existing -and ($existing.PSObject.Properties.Name -contains 'DefaultRoutes')) { $list = @($existing.DefaultRoutes) }
    $new = ConvertFrom-RouteRecord -Record $Record
    if (@($list | Where-Object { (ConvertFrom-RouteRecord -Record $_).key -eq $new.key }).Count -gt 0) { return }
    $list += $Record
    New-ItemProperty -LiteralPath $key -Name 'DefaultRoutes' -Value ([string[]]$list) -PropertyType MultiString -Force | Out-Null
}

function Get-RegisterDns {
    param([int]$Index)
    $c = @(Invoke-Read -ReadWhat "the DNS client settings of interface index $Index" -ReadBlock { Get-DnsClient -InterfaceIndex $Index -ErrorAction Stop })
    if ($c.Count -eq 0) { return $null }
    return [bool]$c[0].RegisterThisConnectionsAddress
}

function Set-IfValue {
    # Bring one Set-NetIPInterface setting to $Want, recording the prior value.
    # $Label names the adapter in the action: for the loopback its name
    # after dsr_win_loopback's rename, so check mode (rename not done) and
    # a real run report the same line.
    param($Adapter, [string]$Family, $Current, [string]$Setting, [string]$Want, [bool]$Record, [string]$Label = '')
    $have = [string]$Current[$Setting]
    if ($have -eq $Want) { return }
    if (-not $Label) { $Label = [string]$Adapter.Name }
    Add-Action "$Label $Family ${Setting}: $have -> $Want"
    $Current[$Setting] = $Want
    if ($check) { return }
    if ($Record) { Save-Prior -Guid ([string]$Adapter.InterfaceGuid) -Name "$Family.$Setting" -Value $have }
    $params = @{ InterfaceIndex = [int]$Adapter.ifIndex; AddressFamily = $Family; ErrorAction = 'Stop' }
    switch ($Setting) {
        'weak_host_send' { $params.WeakHostSend = $Want }
        'weak_host_receive' { $params.WeakHostReceive = $Want }
        'dhcp' { $params.Dhcp = $Want }
        'automatic_metric' { $params.AutomaticMetric = $Want }
        'interface_metric' { $params.InterfaceMetric = [uint32]$Want }
    }
    Set-NetIPInterface @params
}

function Get-AllAdapters {
    # Streamed (no array return), so that Get-AllAdapters | Where-Object
    # filters adapter by adapter.
    Invoke-Read -ReadWhat 'the network adapters' -ReadBlock { Get-NetAdapter -IncludeHidden -ErrorAction Stop }
}

function Get-AdapterByGuid {
    param([string]$Guid)
    return Get-AllAdapters | Where-Object { [string]$_.InterfaceGuid -eq $Guid } | Select-Object -First 1
}

function Get-AdapterByName {
    # Exact, case-insensitive name comparison (-Name would take wildcards).
    param([string]$AdapterName)
    return Get-AllAdapters | Where-Object { [string]$_.Name -eq $AdapterName } | Select-Object -First 1
}

function Get-AddressStores {
    # The policy stores that hold $Address on interface $Index.
    param([int]$Index, [string]$Address)
    $stores = @()
    foreach ($store in @('ActiveStore', 'PersistentStore')) {
        $found = @(Invoke-Read -ReadWhat "address $Address on interface index $Index ($store)" -ReadBlock { Get-NetIPAddress -InterfaceIndex $Index -IPAddress $Address -PolicyStore $store -ErrorAction Stop })
        if ($found.Count -gt 0) { $stores += $store }
    }
    return , $stores
}

function Remove-Vip {
    # Remove an address from every policy store that holds it, the active
    # store first; each store is read again just before (removing it from
    # one store may have removed it from the other).
    param([int]$Index, [string]$Address)
    foreach ($store in @('ActiveStore', 'PersistentStore')) {
        $found = @(Invoke-Read -ReadWhat "address $Address on interface index $Index ($store)" -ReadBlock { Get-NetIPAddress -InterfaceIndex $Index -IPAddress $Address -PolicyStore $store -ErrorAction Stop })
        if ($found.Count -eq 0) { continue }
        Remove-NetIPAddress -InterfaceIndex $Index -IPAddress $Address -PolicyStore $store -Confirm:$false -ErrorAction Stop
    }
}

function Wait-IpInterface {
    # A freshly installed adapter appears before TCP/IP has bound to it:
    # wait, bounded by wait_seconds, for the IP interface of each family
    # that has VIPs; on timeout say why (binding off, or adapter not up).
    param($Adapter, [string[]]$Families)
    $deadline = (Get-Date).AddSeconds($module.Params.wait_seconds)
    foreach ($family in $Families) {
        while (-not (Get-IfState -Index ([int]$Adapter.ifIndex) -Family $family)) {
            if ((Get-Date) -ge $deadline) {
                $component = 'ms_tcpip'
                if ($family -eq 'IPv6') { $component = 'ms_tcpip6' }
                $binding = @(Invoke-Read -ReadWhat "the $component binding" -ReadBlock { Get-NetAdapterBinding -ComponentID $component -IncludeHidden -ErrorAction Stop } |
                        Where-Object { [string]$_.InterfaceDescription -eq [string]$Adapter.InterfaceDescription })
                $cause = "TCP/IP has not created it (adapter status: $($Adapter.Status))"
                if ($binding.Count -gt 0 -and -not $binding[0].Enabled) {
                    $cause = "the $family protocol ($component) is not bound to the adapter (Enable-NetAdapterBinding -ComponentID $component)"
                }
                $module.FailJson("the loopback '$($Adapter.Name)' (interface index $($Adapter.ifIndex)) has no $family interface after $($module.Params.wait_seconds) s: $cause. Nothing else was changed.")
            }
            Start-Sleep -Seconds 1
        }
    }
}

$before = [ordered]@{}
$after = [ordered]@{}
$recorded = @(Get-RecordedVips)

if ($state -eq 'present') {
    # ---- the network adapter (weakhostreceive, optional rename) -------------
    $net = Get-AllAdapters | Where-Object { [int]$_.ifIndex -eq $module.Params.network_interface_index } | Select-Object -First 1
    if (-not $net) {
        $module.FailJson("no network adapter with interface index $($module.Params.network_interface_index). Nothing was changed.")
    }
    foreach ($family in $families) {
        if (-not (Get-IfState -Index $net.ifIndex -Family $family)) {
            $module.FailJson("the network adapter '$($net.Name)' has no $family interface (is $family bound to it?), but a $family VIP needs weakhostreceive there. Nothing was changed.")
        }
    }
    $netBefore = [ordered]@{ name = [string]$net.Name }
    $netAfter = [ordered]@{ name = [string]$net.Name }
    foreach ($family in $families) {
        $s = Get-IfState -Index $net.ifIndex -Family $family
        $netBefore[$family] = [ordered]@{ weak_host_receive = $s.weak_host_receive }
        $netAfter[$family] = [ordered]@{ weak_host_receive = $s.weak_host_receive }
    }

    # ---- the loopback -------------------------------------------------------
    if ($module.Params.loopback_pending) {
        if (-not $check) {
            $module.FailJson("loopback_pending is only valid in check mode")
        }
        # Check mode, the adapter would be installed by dsr_win_loopback first:
        # report what this module would then set.
        $lbBefore = [ordered]@{ present = $false }
        $lbAfter = [ordered]@{ present = $true; name = $loopbackName; addresses = [ordered]@{}; register_dns = $false; default_routes = @() }
        foreach ($vip in $vips.Keys) {
            $lbAfter.addresses[$vip] = [ordered]@{ prefix_length = $vips[$vip].prefix; skip_as_source = $true }
        }
        foreach ($family in $families) {
            $lbAfter[$family] = [ordered]@{ interface_metric = $metric; automatic_metric = 'Disabled'; weak_host_send = 'Enabled'; weak_host_receive = 'Enabled' }
        }
        $lbAfter.IPv4.dhcp = 'Disabled'
        Add-Action "configure the new loopback '$loopbackName'"
    }
    else {
        # By interface GUID, as dsr_win_loopback returned it: in check mode
        # a due rename has not happened, so the name would not find it.
        $lbGuid = $module.Params.loopback_interface_guid
        if (-not $lbGuid) {
            $module.FailJson("loopback_interface_guid is required with state=present unless loopback_pending (pass dsr_win_loopback's interface_guid). Nothing was changed.")
        }
        $lb = Get-AdapterByGuid -Guid $lbGuid
        if (-not $lb) {
            $module.FailJson("no adapter with interface GUID $lbGuid (the KM-TEST loopback '$loopbackName'). Nothing was changed.")
        }
        $lbIndex = [int]$lb.ifIndex
        Wait-IpInterface -Adapter $lb -Families $families
        # Prior values are recorded only on a loopback this role did not
        # create: one it created goes away entirely with state=absent.
        $recordLb = -not (Test-CreatedLoopback -Adapter $lb)

        $lbBefore = [ordered]@{
            present = $true
            name = [string]$lb.Name
            addresses = Get-LoopbackAddresses -Index $lbIndex
            register_dns = Get-RegisterDns -Index $lbIndex
            default_routes = @(Get-DefaultRoutes -Index $lbIndex)
        }
        foreach ($family in $families) {
            $lbBefore[$family] = Get-IfState -Index $lbIndex -Family $family
        }
        # Deep copy for the working "after" state.
        $lbAfter = [ordered]@{
            present = $true
            name = $loopbackName
            addresses = [ordered]@{}
            register_dns = $lbBefore.register_dns
            default_routes = @($lbBefore.default_routes)
        }
        foreach ($k in $lbBefore.addresses.Keys) {
            $lbAfter.addresses[$k] = [ordered]@{ prefix_length = $lbBefore.addresses[$k].prefix_length; skip_as_source = $lbBefore.addresses[$k].skip_as_source }
        }
        foreach ($family in $families) {
            $lbAfter[$family] = [ordered]@{}
            foreach ($k in $lbBefore[$family].Keys) { $lbAfter[$family][$k] = $lbBefore[$family][$k] }
        }

        # IPv4 DHCP off: the loopback must hold only the VIPs (and no APIPA).
        Set-IfValue -Adapter $lb -Family 'IPv4' -Current $lbAfter.IPv4 -Setting 'dhcp' -Want 'Disabled' -Record $recordLb -Label $loopbackName

        # VIPs: /32 or /128, SkipAsSource, no gateway.
        foreach ($vip in $vips.Keys) {
            $want = $vips[$vip]
            $have = $lbAfter.addresses[$vip]
            if ($have -and $have.prefix_length -ne $want.prefix) {
                Add-Action "$loopbackName remove $vip/$($have.prefix_length) (wrong prefix length)"
                if (-not $check) {
                    Remove-Vip -Index $lbIndex -Address $vip
                }
                $lbAfter.addresses.Remove($vip)
                $have = $null
            }
            if (-not $have) {
                Add-Action "$loopbackName add $vip/$($want.prefix) SkipAsSource"
                if (-not $check) {
                    New-NetIPAddress -InterfaceIndex $lbIndex -IPAddress $vip -AddressFamily $want.family -PrefixLength $want.prefix -SkipAsSource $true -ErrorAction Stop | Out-Null
                }
                $lbAfter.addresses[$vip] = [ordered]@{ prefix_length = $want.prefix; skip_as_source = $true }
            }
            elseif (-not $have.skip_as_source) {
                Add-Action "$loopbackName $vip SkipAsSource: False -> True"
                if (-not $check) {
                    Set-NetIPAddress -InterfaceIndex $lbIndex -IPAddress $vip -SkipAsSource $true -ErrorAction Stop
                }
                $have.skip_as_source = $true
            }
        }
        # VIPs this role added earlier and that are no longer wanted.
        # Both stores: one left only in the persistent store comes back at boot.
        foreach ($old in $recorded) {
            if ($vips.Contains($old)) { continue }
            $stores = Get-AddressStores -Index $lbIndex -Address $old
            if ($stores.Count -gt 0) {
                Add-Action "$loopbackName remove $old (no longer a VIP of this host; $($stores -join ', '))"
                if (-not $check) {
                    Remove-Vip -Index $lbIndex -Address $old
                }
                $lbAfter.addresses.Remove($old)
            }
        }
        # No gateway on the loopback. A loopback set up by hand may have one
        # (a default route): recorded first when the role did not create the
        # adapter, so state=absent puts it back, then removed from each
        # policy store that holds it (the persistent one too, or it would
        # come back at the next boot).
        foreach ($record in @(Get-DefaultRouteRecords -Index $lbIndex)) {
            $route = ConvertFrom-RouteRecord -Record $record
            Add-Action "$loopbackName remove default route $($route.prefix) via $($route.next_hop) ($($route.stores -join ', '))"
            if (-not $check) {
                if ($recordLb) { Add-PriorRoute -Guid ([string]$lb.InterfaceGuid) -Record $record }
                foreach ($store in $route.stores) {
                    Remove-NetRoute -InterfaceIndex $lbIndex -DestinationPrefix $route.prefix -NextHop $route.next_hop -PolicyStore $store -Confirm:$false -ErrorAction Stop
                }
            }
        }
        $lbAfter.default_routes = @()

        # DNS registration off.
        if ($lbAfter.register_dns -ne $false) {
            Add-Action "$loopbackName RegisterThisConnectionsAddress: $($lbAfter.register_dns) -> False"
            if (-not $check) {
                if ($recordLb) { Save-Prior -Guid ([string]$lb.InterfaceGuid) -Name 'RegisterThisConnectionsAddress' -Value ([string]$lbAfter.register_dns) }
                Set-DnsClient -InterfaceIndex $lbIndex -RegisterThisConnectionsAddress $false -ErrorAction Stop
            }
            $lbAfter.register_dns = $false
        }

        # Metric (automatic metric off), weak host send and receive.
        foreach ($family in $families) {
            $cur = $lbAfter[$family]
            if ([int]$cur.interface_metric -ne $metric -or $cur.automatic_metric -ne 'Disabled') {
                if ($recordLb -and -not $check) {
                    Save-Prior -Guid ([string]$lb.InterfaceGuid) -Name "$family.automatic_metric" -Value $cur.automatic_metric
                }
                $setsMetric = ([int]$cur.interface_metric -ne $metric)
                Set-IfValue -Adapter $lb -Family $family -Current $cur -Setting 'interface_metric' -Want ([string]$metric) -Record $recordLb -Label $loopbackName
                $cur.interface_metric = $metric
                if ($setsMetric) {
                    # Setting the metric turns automatic metric off by itself
                    # (NetworkingDsc notes it): no action of its own. A real
                    # run reads the result, check mode predicts it; the
                    # Set-IfValue below then acts only if it did not happen.
                    if ($check) {
                        $cur.automatic_metric = 'Disabled'
                    }
                    else {
                        $cur.automatic_metric = (Get-IfState -Index $lbIndex -Family $family).automatic_metric
                    }
                }
                Set-IfValue -Adapter $lb -Family $family -Current $cur -Setting 'automatic_metric' -Want 'Disabled' -Record $false -Label $loopbackName
            }
            Set-IfValue -Adapter $lb -Family $family -Current $cur -Setting 'weak_host_send' -Want 'Enabled' -Record $recordLb -Label $loopbackName
            Set-IfValue -Adapter $lb -Family $family -Current $cur -Setting 'weak_host_receive' -Want 'Enabled' -Record $recordLb -Label $loopbackName
        }
    }

    # weakhostreceive on the network adapter (and weakhostsend stays as is).
    foreach ($family in $families) {
        $cur = [ordered]@{ weak_host_receive = $netAfter[$family].weak_host_receive }
        Set-IfValue -Adapter $net -Family $family -Current $cur -Setting 'weak_host_receive' -Want 'Enabled' -Record $true
        $netAfter[$family].weak_host_receive = $cur.weak_host_receive
    }

    # Optional rename of the network adapter, last (the steps above use its index).
    $newName = $module.Params.network_name
    if ($newName -and $net.Name -ne $newName) {
        $clash = Get-AdapterByName -AdapterName $newName
        if ($clash) {
            $module.FailJson("cannot rename the network adapter '$($net.Name)' to '$newName': another adapter has that name")
        }
        Add-Action "rename network adapter '$($net.Name)' -> '$newName'"
        if (-not $check) {
            Save-Prior -Guid ([string]$net.InterfaceGuid) -Name 'name' -Value ([string]$net.Name)
            $net | Rename-NetAdapter -NewName $newName -ErrorAction Stop
        }
        $netAfter.name = $newName
    }

    $newRecord = @($vips.Keys)
    if ((@($recorded | Sort-Object) -join ',') -ne (@($newRecord | Sort-Object) -join ',')) {
        Set-RecordedVips -List $newRecord
    }

    $before.loopback = $lbBefore
    $before.network = $netBefore
    $after.loopback = $lbAfter
    $after.network = $netAfter
}
else {
    # ---- state: absent ---------------------------------------------------------
    $remove = @($vips.Keys) + @($recorded) | Sort-Object -Unique
    $before.removed_vips = @()
    $after.removed_vips = @()
    # The loopback the preflight chose (by GUID), else the one named so.
    $lb = $null
    if ($module.Params.loopback_interface_guid) { $lb = Get-AdapterByGuid -Guid $module.Params.loopback_interface_guid }
    if (-not $lb) { $lb = Get-AdapterByName -AdapterName $loopbackName }
    $lbAddresses = [ordered]@{}
    if ($lb) { $lbAddresses = Get-LoopbackAddresses -Index ([int]$lb.ifIndex) }
    $before.loopback_addresses = @($lbAddresses.Keys)
    foreach ($vip in $remove) {
        if (-not $lb) { continue }
        # Active and persistent store: a VIP left in the persistent store
        # alone would come back at the next boot.
        $stores = Get-AddressStores -Index ([int]$lb.ifIndex) -Address $vip
        if ($stores.Count -gt 0) {
            Add-Action "$loopbackName remove $vip ($($stores -join ', '))"
            $after.removed_vips += $vip
            if (-not $check) {
                Remove-Vip -Index ([int]$lb.ifIndex) -Address $vip
            }
            if ($lbAddresses.Contains($vip)) { $lbAddresses.Remove($vip) }
        }
    }
    $after.loopback_addresses = @($lbAddresses.Keys)
    if ($recorded.Count -gt 0) {
        $module.Result.changed = $true
        Set-RecordedVips -List @()
    }

    # Put back every value recorded before our first change.
    $before.restored = [ordered]@{}
    $after.restored = [ordered]@{}
    if (Test-Path -LiteralPath $priorRoot) {
        foreach ($key in @(Get-ChildItem -LiteralPath $priorRoot)) {
            $guid = $key.PSChildName
            $adapter = Get-AdapterByGuid -Guid $guid
            $values = Get-ItemProperty -LiteralPath $key.PSPath
            $names = @($values.PSObject.Properties.Name | Where-Object { $_ -notlike 'PS*' })
            if (-not $adapter) {
                # The adapter is gone (removed with the loopback): nothing to put back.
                Add-Action "forget recorded settings of the removed adapter $guid"
                if (-not $check) { Remove-Item -LiteralPath $key.PSPath -Recurse -Force }
                continue
            }
            $label = [string]$adapter.Name
            $before.restored[$label] = [ordered]@{}
            $after.restored[$label] = [ordered]@{}
            # Metric first: restoring automatic metric must follow the metric.
            # Default routes after the interface values, the name last.
            $special = @('name', 'DefaultRoutes')
            $ordered = @($names | Where-Object { $_ -like '*.interface_metric' }) + @($names | Where-Object { $_ -like '*.automatic_metric' }) + @($names | Where-Object { $_ -notlike '*.interface_metric' -and $_ -notlike '*.automatic_metric' -and $special -notcontains $_ }) + @($names | Where-Object { $_ -eq 'DefaultRoutes' }) + @($names | Where-Object { $_ -eq 'name' })
            foreach ($valueName in $ordered) {
                if ($valueName -eq 'DefaultRoutes') {
                    $missing = @()
                    foreach ($record in @($values.DefaultRoutes)) {
                        $route = ConvertFrom-RouteRecord -Record $record
                        foreach ($store in $route.stores) {
                            $present = @(Invoke-Read -ReadWhat "route $($route.prefix) via $($route.next_hop) ($store)" -ReadBlock { Get-NetRoute -InterfaceIndex ([int]$adapter.ifIndex) -DestinationPrefix $route.prefix -NextHop $route.next_hop -PolicyStore $store -ErrorAction Stop })
                            if ($present.Count -gt 0) { continue }
                            $missing += "$($route.prefix) via $($route.next_hop) ($store)"
                            Add-Action "$label put back default route $($route.prefix) via $($route.next_hop), metric $($route.metric) ($store)"
                            if (-not $check) {
                                New-NetRoute -InterfaceIndex ([int]$adapter.ifIndex) -AddressFamily $route.family -DestinationPrefix $route.prefix -NextHop $route.next_hop -RouteMetric $route.metric -PolicyStore $store -ErrorAction Stop | Out-Null
                            }
                        }
                    }
                    if ($missing.Count -gt 0) {
                        $before.restored[$label].default_routes = @()
                        $after.restored[$label].default_routes = $missing
                    }
                    continue
                }
                $prior = [string]$values.$valueName
                if ($valueName -eq 'name') {
                    if ($adapter.Name -ne $prior) {
                        $before.restored[$label].name = [string]$adapter.Name
                        $after.restored[$label].name = $prior
                        Add-Action "rename '$($adapter.Name)' back to '$prior'"
                        $clash = Get-AdapterByName -AdapterName $prior
                        if ($clash) {
                            # The record stays, so a re-run finishes the job.
                            $module.FailJson("cannot rename '$($adapter.Name)' back to '$prior': another adapter has that name now. Rename that one, then run state=absent again.")
                        }
                        if (-not $check) { $adapter | Rename-NetAdapter -NewName $prior -ErrorAction Stop }
                    }
                    continue
                }
                if ($valueName -eq 'RegisterThisConnectionsAddress') {
                    $have = Get-RegisterDns -Index ([int]$adapter.ifIndex)
                    $want = [System.Convert]::ToBoolean($prior)
                    if ($have -ne $want) {
                        $before.restored[$label].register_dns = $have
                        $after.restored[$label].register_dns = $want
                        Add-Action "$label RegisterThisConnectionsAddress back to $want"
                        if (-not $check) { Set-DnsClient -InterfaceIndex ([int]$adapter.ifIndex) -RegisterThisConnectionsAddress $want -ErrorAction Stop }
                    }
                    continue
                }
                $family, $setting = $valueName -split '\.', 2
                $cur = Get-IfState -Index ([int]$adapter.ifIndex) -Family $family
                if (-not $cur) { continue }
                if ($setting -eq 'automatic_metric' -and $prior -eq 'Disabled') { continue }
                $before.restored[$label]["$family.$setting"] = [string]$cur[$setting]
                Set-IfValue -Adapter $adapter -Family $family -Current $cur -Setting $setting -Want $prior -Record $false
                $after.restored[$label]["$family.$setting"] = [string]$cur[$setting]
            }
            if (-not $check) { Remove-Item -LiteralPath $key.PSPath -Recurse -Force }
        }
        if (-not $check) {
            $rootItem = $null
            if (Test-Path -LiteralPath $priorRoot) { $rootItem = Get-Item -LiteralPath $priorRoot -ErrorAction Stop }
            if ($rootItem -and $rootItem.SubKeyCount -eq 0 -and $rootItem.ValueCount -eq 0) {
                Remove-Item -LiteralPath $priorRoot -Force
            }
            $rootItem = $null
            if (Test-Path -LiteralPath $regKey) { $rootItem = Get-Item -LiteralPath $regKey -ErrorAction Stop }
            if ($rootItem -and $rootItem.SubKeyCount -eq 0 -and $rootItem.ValueCount -eq 0) {
                Remove-Item -LiteralPath $regKey -Force
            }
        }
    }
}

$module.Diff.before = $before
$module.Diff.after = $after
$module.ExitJson()
