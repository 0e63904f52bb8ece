"""Read-only checks: is a host a working DSR real server (settings, ARP/ND
from a vantage host), ``status``/``verify`` over many hosts, and the analysis
of captured packets against the three DSR steps."""
