"""``dsrprov doctor``: find what breaks DSR, name it in one line, say the fix.

Read-only. Probes (one SSH or WinRM round trip per host, plus one session on
the vantage host for the ARP/ND and DR-path probes) give facts; pure
functions turn facts into :class:`~dsrprov.doctor.findings.Finding` s, each
with a stable id from :data:`~dsrprov.doctor.findings.CATALOGUE`.
"""
