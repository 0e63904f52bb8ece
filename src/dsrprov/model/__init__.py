"""The inventory as the CLI sees it: read (variables merged the way Ansible
merges them) and edited (comments and order kept).

The rules of VIPs and services are not here: they live in the collection
(``ansible_collections.dsrprov.dsr.plugins.plugin_utils``), the one copy
that the roles' filters and the CLI both import."""
