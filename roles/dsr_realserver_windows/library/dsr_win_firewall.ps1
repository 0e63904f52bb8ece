#!powershell

# dsr_win_firewall: inbound allow rules scoped to each VIP and service port,
# all in one rule group, so the rules this role owns can be listed, updated
# and removed without touching anyone else's. See dsr_win_firewall.py.
#
# Cmdlets followed (NetSecurity module, Windows Server 2012+):
#   New-NetFirewallRule -Name -DisplayName -Group -Direction Inbound -Action Allow
#                       -Profile Any -Protocol TCP|UDP -LocalPort -LocalAddress
#   Get-NetFirewallRule -Group, Get-NetFirewallPortFilter, Get-NetFirewallAddressFilter
#   Remove-NetFirewallRule -Name
#     https://learn.microsoft.com/powershell/module/netsecurity/new-netfirewallrule

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
$fwProfile = $module.Params.profile
$check = $module.CheckMode
$module.Result.changed = $false
$module.Result.actions = [System.Collections.ArrayList]@()

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
        profile = [string]$Rule.Profile
        protocol = ([string]$ports.Protocol).ToLowerInvariant()
        port = (@($ports.LocalPort) -join ',')
        local_address = ($local -join ',')
    }
}

$existing = [ordered]@{}
foreach ($rule in @(Get-NetFirewallRule -Group $group -ErrorAction SilentlyContinue | Sort-Object -Property Name)) {
    $existing[[string]$rule.Name] = Get-RuleState -Rule $rule
}

$wanted = [ordered]@{}
if ($module.Params.state -eq 'present') {
    foreach ($r in $module.Params.rules) {
        $wanted[$r.name] = [ordered]@{
            enabled = 'True'
            direction = 'Inbound'
            action = 'Allow'
            profile = $fwProfile
            protocol = $r.protocol
            port = [string]$r.port
            local_address = (ConvertTo-Address -Text $r.vip)
            services = $r.services
        }
    }
}

function Test-Same {
    param($Have, $Want)
    foreach ($k in @('enabled', 'direction', 'action', 'profile', 'protocol', 'port', 'local_address')) {
        if ([string]$Have[$k] -ne [string]$Want[$k]) { return $false }
    }
    return $true
}

foreach ($name in @($existing.Keys)) {
    if (-not $wanted.Contains($name)) {
        $module.Result.changed = $true
        [void]$module.Result.actions.Add("remove rule $name")
        if (-not $check) { Remove-NetFirewallRule -Name $name -ErrorAction Stop }
    }
}

foreach ($name in @($wanted.Keys)) {
    $want = $wanted[$name]
    $have = $null
    if ($existing.Contains($name)) { $have = $existing[$name] }
    if ($have -and (Test-Same -Have $have -Want $want)) { continue }
    $module.Result.changed = $true
    if ($have) {
        [void]$module.Result.actions.Add("replace rule $name")
    }
    else {
        [void]$module.Result.actions.Add("add rule $name")
    }
    if ($check) { continue }
    if ($have) { Remove-NetFirewallRule -Name $name -ErrorAction Stop }
    $what = "$($want.protocol.ToUpperInvariant())/$($want.port) on $($want.local_address)"
    $services = ''
    if ($want.services -and $want.services.Count -gt 0) { $services = " ($($want.services -join ', '))" }
    $ruleParams = @{
        Name = $name
        DisplayName = "dsrprov DSR $what"
        Description = "Direct Server Return: allow $what$services. The VIP sits on the KM-TEST loopback, an unidentified (Public) network. Managed by dsrprov (Ansible role dsr_realserver_windows)."
        Group = $group
        Direction = 'Inbound'
        Action = 'Allow'
        Enabled = 'True'
        Profile = $fwProfile
        Protocol = $want.protocol.ToUpperInvariant()
        LocalPort = $want.port
        LocalAddress = $want.local_address
        ErrorAction = 'Stop'
    }
    New-NetFirewallRule @ruleParams | Out-Null
}

# Diff: one readable line per rule.
function Format-Rules {
    param($Rules)
    $out = [ordered]@{}
    foreach ($name in $Rules.Keys) {
        $r = $Rules[$name]
        $out[$name] = "$($r.direction) $($r.action) $($r.protocol)/$($r.port) to $($r.local_address), profile $($r.profile), enabled $($r.enabled)"
    }
    return $out
}
$module.Diff.before = @{ rules = (Format-Rules -Rules $existing) }
$module.Diff.after = @{ rules = (Format-Rules -Rules $wanted) }
$module.Result.rules = @($wanted.Keys)
$module.ExitJson()
