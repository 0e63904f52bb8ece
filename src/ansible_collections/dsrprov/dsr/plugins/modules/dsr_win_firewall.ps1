#!powershell

# dsr_win_firewall: inbound allow rules scoped to each VIP and service port,
# all in one rule group, so the rules this role owns can be listed, updated
# and removed without touching anyone else's. See dsr_win_firewall.py.
#
# Cmdlets followed (NetSecurity module, Windows Server 2012+):
#   New-NetFirewallRule -Name -DisplayName -Group -Direction Inbound -Action Allow
#                       -Profile Any -Protocol TCP|UDP -LocalPort -LocalAddress
#   Get-NetFirewallRule -Group, Get-NetFirewallPortFilter, Get-NetFirewallAddressFilter
#   Set-NetFirewallRule -Name -Profile -Direction -Action -Enabled -Protocol -LocalPort -LocalAddress
#   Remove-NetFirewallRule -Name
#     https://learn.microsoft.com/powershell/module/netsecurity/new-netfirewallrule
#
# Profile is a flags enum (Any = 0, Domain = 1, Private = 2, Public = 4):
# a rule reads back as "Domain, Private" whatever spelling created it, so
# profiles are compared as flags, never as text. The option is validated
# before anything changes, and a rule that differs is updated in place
# (Set-NetFirewallRule): a working rule is never removed before its
# replacement exists, and rules no longer wanted go only after the wanted
# ones are in place.
#
# Each cmdlet is called with its own, literal parameters (no shared splat):
# New-NetFirewallRule takes -DisplayName and -Group, Set-NetFirewallRule
# -NewDisplayName, and a reader or a static checker can see which goes where.
# Set and Remove get the rule object through the pipeline (InputObject), not
# -Name, and the group is refused if it holds a wildcard character: -Name
# and -Group of the NetSecurity cmdlets match wildcards.
#   https://learn.microsoft.com/powershell/module/netsecurity/set-netfirewallrule

#AnsibleRequires -CSharpUtil Ansible.Basic

$spec = @{
    options = @{
        state = @{ type = 'str'; choices = @('present', 'absent'); default = 'present' }
        group = @{ type = 'str'; default = 'dsrprov' }
        profile = @{ type = 'str'; default = 'Any' }
        rules = @{
            type = 'list'
            elements = 'dict'
            default = @()
            options = @{
                name = @{ type = 'str'; required = $true }
                vip = @{ type = 'str'; required = $true }
                protocol = @{ type = 'str'; choices = @('tcp', 'udp'); default = 'tcp' }
                port = @{ type = 'int'; required = $true }
                services = @{ type = 'list'; elements = 'str'; default = @() }
            }
        }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$group = $module.Params.group
$check = $module.CheckMode
if ($group -match '[\[\]\*\?]') {
    $module.FailJson("group '$group' holds a wildcard character ([ ] * ?), which Get-NetFirewallRule -Group would match against other groups. Nothing was changed.")
}
$module.Result.changed = $false
$module.Result.actions = [System.Collections.ArrayList]@()

$profileFlags = [ordered]@{ Domain = 1; Private = 2; Public = 4 }

function ConvertTo-ProfileFlag {
    # "Any", "Domain,Private", "Domain, Private" or the number: the flags,
    # or a string saying what is wrong.
    param([string]$Text)
    $trimmed = $Text.Trim()
    $number = 0
    if ([int]::TryParse($trimmed, [ref]$number)) { return $number }
    $names = @($trimmed -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ })
    if ($names.Count -eq 0) { return "an empty profile" }
    $flags = 0
    foreach ($n in $names) {
        if ($n -eq 'Any') {
            if ($names.Count -gt 1) { return "'Any' cannot be combined with other profiles" }
            return 0
        }
        $known = @($profileFlags.Keys | Where-Object { $_ -eq $n })
        if ($known.Count -eq 0) { return "'$n' is not a firewall profile" }
        $flags = $flags -bor $profileFlags[$known[0]]
    }
    return $flags
}

function Format-ProfileFlag {
    # The spelling Windows uses when it shows a rule: "Any", "Domain, Private".
    param([int]$Flags)
    if ($Flags -eq 0) { return 'Any' }
    return (@($profileFlags.Keys | Where-Object { $Flags -band $profileFlags[$_] }) -join ', ')
}

# Validate before any change: a typo must not cost the service its rule.
$wantedFlags = ConvertTo-ProfileFlag -Text $module.Params.profile
if ($wantedFlags -is [string]) {
    $module.FailJson("profile '$($module.Params.profile)': $wantedFlags; use Any, or one or more of Domain, Private, Public (comma-separated). Nothing was changed.")
}
$fwProfile = Format-ProfileFlag -Flags $wantedFlags

function ConvertTo-Address {
    param([string]$Text)
    $bare = ($Text -split '/')[0]
    $parsed = $null
    if ([System.Net.IPAddress]::TryParse($bare, [ref]$parsed)) { return $parsed.ToString() }
    return $Text
}

function Get-RuleState {
    param($Rule)
    $ports = $Rule | Get-NetFirewallPortFilter
    $addresses = $Rule | Get-NetFirewallAddressFilter
    $local = @($addresses.LocalAddress | ForEach-Object { ConvertTo-Address -Text ([string]$_) })
    return [ordered]@{
        enabled = [string]$Rule.Enabled
        direction = [string]$Rule.Direction
        action = [string]$Rule.Action
        profile = ConvertTo-ProfileFlag -Text ([string]$Rule.Profile)
        protocol = ([string]$ports.Protocol).ToLowerInvariant()
        port = (@($ports.LocalPort) -join ',')
        local_address = ($local -join ',')
    }
}

# Read the group's rules; "no rule in the group" is the only failure that
# means none (CIM's ObjectNotFound), any other stops the module.
$existing = [ordered]@{}
$existingRules = @{}
try {
    $groupRules = @(Get-NetFirewallRule -Group $group -ErrorAction Stop | Sort-Object -Property Name)
}
catch {
    if ($_.CategoryInfo.Category -ne 'ObjectNotFound') {
        $module.FailJson("could not read the firewall rules of group '$group': $($_.Exception.Message). Nothing was changed.", $_)
    }
    $groupRules = @()
}
foreach ($rule in $groupRules) {
    $existing[[string]$rule.Name] = Get-RuleState -Rule $rule
    $existingRules[[string]$rule.Name] = $rule
}

$wanted = [ordered]@{}
if ($module.Params.state -eq 'present') {
    foreach ($r in $module.Params.rules) {
        $wanted[$r.name] = [ordered]@{
            enabled = 'True'
            direction = 'Inbound'
            action = 'Allow'
            profile = $wantedFlags
            protocol = $r.protocol
            port = [string]$r.port
            local_address = (ConvertTo-Address -Text $r.vip)
            services = $r.services
        }
    }
}

function Test-Same {
    param($Have, $Want)
    foreach ($k in @('enabled', 'direction', 'action', 'protocol', 'port', 'local_address')) {
        if ([string]$Have[$k] -ne [string]$Want[$k]) { return $false }
    }
    # Flags against flags ("Domain, Private" read back equals "Domain,Private").
    return ($Have.profile -is [int]) -and ($Have.profile -eq $Want.profile)
}

foreach ($name in @($wanted.Keys)) {
    $want = $wanted[$name]
    $have = $null
    if ($existing.Contains($name)) { $have = $existing[$name] }
    if ($have -and (Test-Same -Have $have -Want $want)) { continue }
    $module.Result.changed = $true
    if ($have) {
        [void]$module.Result.actions.Add("update rule $name")
    }
    else {
        [void]$module.Result.actions.Add("add rule $name")
    }
    if ($check) { continue }
    $what = "$($want.protocol.ToUpperInvariant())/$($want.port) on $($want.local_address)"
    $services = ''
    if ($want.services -and $want.services.Count -gt 0) { $services = " ($($want.services -join ', '))" }
    $description = "Direct Server Return: allow $what$services. The VIP sits on the KM-TEST loopback, an unidentified (Public) network. Managed by dsrprov (Ansible role dsr_realserver_windows)."
    $displayName = "dsrprov DSR $what"
    $protocol = $want.protocol.ToUpperInvariant()
    if ($have) {
        # In place: the rule keeps working until the new values are set.
        $existingRules[$name] | Set-NetFirewallRule -NewDisplayName $displayName -Description $description -Direction Inbound -Action Allow -Enabled True -Profile $fwProfile -Protocol $protocol -LocalPort $want.port -LocalAddress $want.local_address -ErrorAction Stop
    }
    else {
        New-NetFirewallRule -Name $name -DisplayName $displayName -Group $group -Description $description -Direction Inbound -Action Allow -Enabled True -Profile $fwProfile -Protocol $protocol -LocalPort $want.port -LocalAddress $want.local_address -ErrorAction Stop | Out-Null
    }
}

# Rules no longer wanted go last, once every wanted rule is in place.
foreach ($name in @($existing.Keys)) {
    if (-not $wanted.Contains($name)) {
        $module.Result.changed = $true
        [void]$module.Result.actions.Add("remove rule $name")
        if (-not $check) { $existingRules[$name] | Remove-NetFirewallRule -ErrorAction Stop }
    }
}

# Diff: one readable line per rule.
function Format-Rules {
    param($Rules)
    $out = [ordered]@{}
    foreach ($name in $Rules.Keys) {
        $r = $Rules[$name]
        $shown = $r.profile
        if ($shown -isnot [string]) { $shown = Format-ProfileFlag -Flags $shown }
        $out[$name] = "$($r.direction) $($r.action) $($r.protocol)/$($r.port) to $($r.local_address), profile $shown, enabled $($r.enabled)"
    }
    return $out
}
$module.Diff.before = @{ rules = (Format-Rules -Rules $existing) }
$module.Diff.after = @{ rules = (Format-Rules -Rules $wanted) }
$module.Result.rules = @($wanted.Keys)
$module.ExitJson()
