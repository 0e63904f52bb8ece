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
        $p = Get-ItemProperty -LiteralPath $regKey -ErrorAction SilentlyContinue
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
            Remove-ItemProperty -LiteralPath $regKey -Name 'Vips' -ErrorAction SilentlyContinue
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
    $existing = Get-ItemProperty -LiteralPath $key -ErrorAction SilentlyContinue
    if ($existing -and ($existing.PSObject.Properties.Name -contains $Name)) { return }
    New-ItemProperty -LiteralPath $key -Name $Name -Value $Value -PropertyType String -Force | Out-Null
}

function Get-CreatedLoopbackInstanceId {
    if (Test-Path -LiteralPath $regKey) {
        $p = Get-ItemProperty -LiteralPath $regKey -ErrorAction SilentlyContinue
        if ($p -and ($p.PSObject.Properties.Name -contains 'LoopbackCreatedByRole') -and [int]$p.LoopbackCreatedByRole -eq 1) {
            return [string]$p.LoopbackInstanceId
        }
    }
    return ''
}

# --- state readers -----------------------------------------------------------
function Get-IfState {
    param([int]$Index, [string]$Family)
    $ipIf = Get-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -ErrorAction SilentlyContinue
    if (-not $ipIf) { return $null }
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
    foreach ($ip in @(Get-NetIPAddress -InterfaceIndex $Index -ErrorAction SilentlyContinue | Sort-Object -Property IPAddress)) {
        $addr = ([string]$ip.IPAddress -split '%')[0]
        # Link-local addresses (fe80::/10, 169.254/16) are the system's own.
        if ($addr -like 'fe80:*' -or $addr -like '169.254.*') { continue }
        $out[$addr] = [ordered]@{ prefix_length = [int]$ip.PrefixLength; skip_as_source = [bool]$ip.SkipAsSource }
    }
    return $out
}

function Get-DefaultRoutes {
    param([int]$Index)
    return @(Get-NetRoute -InterfaceIndex $Index -ErrorAction SilentlyContinue |
            Where-Object { $_.DestinationPrefix -eq '0.0.0.0/0' -or $_.DestinationPrefix -eq '::/0' } |
            ForEach-Object { "$($_.DestinationPrefix) via $($_.NextHop)" })
}

function Get-DefaultRouteRecords {
    # The default routes of an interface, one record per route with the
    # policy stores that hold it: "IPv4|0.0.0.0/0|192.0.2.1|0|ActiveStore,PersistentStore".
    param([int]$Index)
    $byRoute = [ordered]@{}
    foreach ($store in @('ActiveStore', 'PersistentStore')) {
        foreach ($route in @(Get-NetRoute -InterfaceIndex $Index -PolicyStore $store -ErrorAction SilentlyContinue |
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
    $existing = Get-ItemProperty -LiteralPath $key -ErrorAction SilentlyContinue
    $list = @()
    if ($existing -and ($existing.PSObject.Properties.Name -contains 'DefaultRoutes')) { $list = @($existing.DefaultRoutes) }
    $new = ConvertFrom-RouteRecord -Record $Record
    if (@($list | Where-Object { (ConvertFrom-RouteRecord -Record $_).key -eq $new.key }).Count -gt 0) { return }
    $list += $Record
    New-ItemProperty -LiteralPath $key -Name 'DefaultRoutes' -Value ([string[]]$list) -PropertyType MultiString -Force | Out-Null
}

function Get-RegisterDns {
    param([int]$Index)
    $c = Get-DnsClient -InterfaceIndex $Index -ErrorAction SilentlyContinue
    if (-not $c) { return $null }
    return [bool]$c.RegisterThisConnectionsAddress
}

function Set-IfValue {
    # Bring one Set-NetIPInterface setting to $Want, recording the prior value.
    param($Adapter, [string]$Family, $Current, [string]$Setting, [string]$Want, [bool]$Record)
    $have = [string]$Current[$Setting]
    if ($have -eq $Want) { return }
    Add-Action "$($Adapter.Name) $Family ${Setting}: $have -> $Want"
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

function Get-AdapterByGuid {
    param([string]$Guid)
    return Get-NetAdapter -IncludeHidden -ErrorAction SilentlyContinue | Where-Object { [string]$_.InterfaceGuid -eq $Guid } | Select-Object -First 1
}

$before = [ordered]@{}
$after = [ordered]@{}
$recorded = @(Get-RecordedVips)

if ($state -eq 'present') {
    # ---- the network adapter (weakhostreceive, optional rename) -------------
    $net = Get-NetAdapter -IncludeHidden -ErrorAction SilentlyContinue | Where-Object { [int]$_.ifIndex -eq $module.Params.network_interface_index } | Select-Object -First 1
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
        $lb = Get-NetAdapter -Name $loopbackName -IncludeHidden -ErrorAction SilentlyContinue
        if (-not $lb) {
            $module.FailJson("no adapter named '$loopbackName' (the KM-TEST loopback). Nothing was changed.")
        }
        $lbIndex = [int]$lb.ifIndex
        # Prior values are recorded only on a loopback this role did not
        # create: one it created goes away entirely with state=absent.
        $recordLb = ([string]$lb.PnPDeviceID -ne (Get-CreatedLoopbackInstanceId))

        $lbBefore = [ordered]@{
            present = $true
            name = [string]$lb.Name
            addresses = Get-LoopbackAddresses -Index $lbIndex
            register_dns = Get-RegisterDns -Index $lbIndex
            default_routes = @(Get-DefaultRoutes -Index $lbIndex)
        }
        foreach ($family in $families) {
            $lbBefore[$family] = Get-IfState -Index $lbIndex -Family $family
            if (-not $lbBefore[$family]) {
                $module.FailJson("the loopback '$loopbackName' has no $family interface (is $family bound to it?). Nothing was changed.")
            }
        }
        # Deep copy for the working "after" state.
        $lbAfter = [ordered]@{
            present = $true
            name = [string]$lb.Name
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
        Set-IfValue -Adapter $lb -Family 'IPv4' -Current $lbAfter.IPv4 -Setting 'dhcp' -Want 'Disabled' -Record $recordLb

        # VIPs: /32 or /128, SkipAsSource, no gateway.
        foreach ($vip in $vips.Keys) {
            $want = $vips[$vip]
            $have = $lbAfter.addresses[$vip]
            if ($have -and $have.prefix_length -ne $want.prefix) {
                Add-Action "$loopbackName remove $vip/$($have.prefix_length) (wrong prefix length)"
                if (-not $check) {
                    Remove-NetIPAddress -InterfaceIndex $lbIndex -IPAddress $vip -Confirm:$false -ErrorAction Stop
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
        foreach ($old in $recorded) {
            if (-not $vips.Contains($old) -and $lbAfter.addresses.Contains($old)) {
                Add-Action "$loopbackName remove $old (no longer a VIP of this host)"
                if (-not $check) {
                    Remove-NetIPAddress -InterfaceIndex $lbIndex -IPAddress $old -Confirm:$false -ErrorAction Stop
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
                Set-IfValue -Adapter $lb -Family $family -Current $cur -Setting 'interface_metric' -Want ([string]$metric) -Record $recordLb
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
                Set-IfValue -Adapter $lb -Family $family -Current $cur -Setting 'automatic_metric' -Want 'Disabled' -Record $false
            }
            Set-IfValue -Adapter $lb -Family $family -Current $cur -Setting 'weak_host_send' -Want 'Enabled' -Record $recordLb
            Set-IfValue -Adapter $lb -Family $family -Current $cur -Setting 'weak_host_receive' -Want 'Enabled' -Record $recordLb
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
        $clash = Get-NetAdapter -Name $newName -IncludeHidden -ErrorAction SilentlyContinue
        if ($clash) {
            $module.FailJson("cannot rename the network adapter '$($net.Name)' to '$newName': another adapter has that name")
        }
        Add-Action "rename network adapter '$($net.Name)' -> '$newName'"
        if (-not $check) {
            Save-Prior -Guid ([string]$net.InterfaceGuid) -Name 'name' -Value ([string]$net.Name)
            Rename-NetAdapter -Name $net.Name -NewName $newName -ErrorAction Stop
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
    $lb = Get-NetAdapter -Name $loopbackName -IncludeHidden -ErrorAction SilentlyContinue
    $lbAddresses = [ordered]@{}
    if ($lb) { $lbAddresses = Get-LoopbackAddresses -Index ([int]$lb.ifIndex) }
    $before.loopback_addresses = @($lbAddresses.Keys)
    foreach ($vip in $remove) {
        if ($lb -and $lbAddresses.Contains($vip)) {
            Add-Action "$loopbackName remove $vip"
            $after.removed_vips += $vip
            if (-not $check) {
                Remove-NetIPAddress -InterfaceIndex ([int]$lb.ifIndex) -IPAddress $vip -Confirm:$false -ErrorAction Stop
            }
            $lbAddresses.Remove($vip)
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
                            $present = @(Get-NetRoute -InterfaceIndex ([int]$adapter.ifIndex) -DestinationPrefix $route.prefix -NextHop $route.next_hop -PolicyStore $store -ErrorAction SilentlyContinue)
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
                        $clash = Get-NetAdapter -Name $prior -IncludeHidden -ErrorAction SilentlyContinue
                        if ($clash) {
                            # The record stays, so a re-run finishes the job.
                            $module.FailJson("cannot rename '$($adapter.Name)' back to '$prior': another adapter has that name now. Rename that one, then run state=absent again.")
                        }
                        if (-not $check) { Rename-NetAdapter -Name $adapter.Name -NewName $prior -ErrorAction Stop }
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
            $rootItem = Get-Item -LiteralPath $priorRoot -ErrorAction SilentlyContinue
            if ($rootItem -and $rootItem.SubKeyCount -eq 0 -and $rootItem.ValueCount -eq 0) {
                Remove-Item -LiteralPath $priorRoot -Force
            }
            $rootItem = Get-Item -LiteralPath $regKey -ErrorAction SilentlyContinue
            if ($rootItem -and $rootItem.SubKeyCount -eq 0 -and $rootItem.ValueCount -eq 0) {
                Remove-Item -LiteralPath $regKey -Force
            }
        }
    }
}

$module.Diff.before = $before
$module.Diff.after = $after
$module.ExitJson()
