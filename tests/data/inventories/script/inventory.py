#!/usr/bin/env python3
# Models: a dynamic (script) inventory, as a CMDB export would be.
import json
import sys

if "--host" in sys.argv:
    print("{}")
else:
    print(
        json.dumps(
            {
                "dsr_realservers": {"children": ["dsr_realservers_linux"]},
                "dsr_realservers_linux": {"hosts": ["rs1", "rs2"], "vars": {"dsr_vips": ["10.9.0.100"]}},
                "_meta": {
                    "hostvars": {
                        "rs1": {"ansible_host": "127.0.0.11"},
                        "rs2": {"ansible_host": "127.0.0.12", "dsr_weight": 2},
                    }
                },
            }
        )
    )
