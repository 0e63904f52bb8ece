# Read by molecule/windows (takeover.yml, cleanup.yml): how many addresses
# equal to $Vip each policy store holds, on any interface. Only CIM's
# ObjectNotFound counts as none; any other failure fails the step.
param([string]$Vip)
$ErrorActionPreference = 'Stop'
$count = [ordered]@{}
foreach ($store in @('ActiveStore', 'PersistentStore')) {
    try {
        $count[$store] = @(Get-NetIPAddress -IPAddress $Vip -PolicyStore $store -ErrorAction Stop).Count
    }
    catch {
        if ($_.CategoryInfo.Category -ne 'ObjectNotFound') { throw }
        $count[$store] = 0
    }
}
$count
