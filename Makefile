# dsrprov: `make demo` runs the main job on the local lab, `make test` runs
# every test. Both install what they need first (make setup).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export CONTAINERS_CONF ?= $(CURDIR)/lab/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
COLLECTION := src/ansible_collections/dsrprov/dsr

.PHONY: setup image demo test lint unit integration integration-extended sanity molecule bench bench-fleet bench-reliability lab-up lab-down clean

setup:
	@sh lab/setup.sh

image: setup
	@sh lab/image/build.sh

demo: setup
	@$(BIN)/python -m dsrprov_lab.demo

# Collection-grade checks too: ansible-test sanity (make sanity, below).
lint: setup sanity
	$(BIN)/ruff check src tests lab
	$(BIN)/ruff format --check src tests lab
	$(BIN)/mypy
	$(BIN)/ansible-lint --profile production
	$(BIN)/ansible-playbook --syntax-check site.yml
	cd $(COLLECTION) && $(CURDIR)/$(BIN)/antsibull-changelog lint

# No podman, image or network: the venv is enough (about a minute on 2 cores).
# -n auto: one pytest-xdist worker per core (each test has its own temporary
# directories and the simulators their own ports).
unit: setup
	$(BIN)/python lab/role_docs.py --check
	$(BIN)/pytest -q -n auto tests/unit

# The lab: real systemd hosts, the director VM, real packets.
# --durations: each run's log says where CI's time goes (the suite's budget).
integration: image
	$(BIN)/pytest -q -m "not extended" --durations=30 tests/integration

# Long lab tests kept out of make test (CI has 90 minutes on 2 cores): the
# director's DSR-path check faults, the Linux module's VLAN and kill tests,
# enroll/unenroll on a directory inventory, netplan's NetworkManager renderer
# (refused; its own image kind).
integration-extended: image
	$(BIN)/pytest -q -m extended tests/integration

# ansible-test sanity on the collection (tests/sanity/ignore-2.19.txt says why
# each line is there). Its first run installs a venv per test from the package
# index (4.5 min on 2 cores), later runs take under a minute.
sanity: setup
	sh lab/sanity.sh

# Scenarios that run on this machine; "windows" needs a Windows host and runs
# from pytest (skipped with its reason when none is named).
MOLECULE_SCENARIOS := default

molecule: image
	for s in $(MOLECULE_SCENARIOS); do $(BIN)/molecule test -s $$s || exit 1; done

test: lint unit integration molecule

bench: setup
	@$(BIN)/python lab/bench.py
	@$(BIN)/python lab/bench_cli.py

# What a client sees of planned changes and failures (about 40 min on 2 cores).
bench-reliability: setup
	@$(BIN)/python lab/bench_reliability.py

# dsrprov against a parallel SSH loop on fleet labs of 8 and 32 real servers
# (DSRPROV_BENCH_SIZES, DSRPROV_BENCH_RUNS, DSRPROV_BENCH_COMPARE=another checkout).
bench-fleet: image
	@$(BIN)/python lab/bench_fleet.py

# The lab is test and demo equipment (src/dsrprov_lab, not in the wheel).
lab-up: image
	@$(BIN)/python -m dsrprov_lab up

lab-down: setup
	@$(BIN)/python -m dsrprov_lab down

clean: lab-down
	rm -rf inventories/lab/.state
