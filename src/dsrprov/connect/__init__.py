"""Reaching hosts: SSH (paramiko) and WinRM (pywinrm, HTTPS), secure by
default, and the read-only probes that turn one round trip into facts."""
