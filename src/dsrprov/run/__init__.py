"""Running the collection's playbooks: the one place ansible-playbook is started."""
