"""Checks the customer's Compose bundle keeps its security settings.

Reads the output of `docker-compose -f compose/customer/docker-compose.yml config`
(the file as Compose resolves it) and fails, naming the service and setting, unless
every service is read_only, drops ALL capabilities, has no-new-privileges, runs as a
non-root user, publishes no port, takes secrets as files (no secret-looking variable
in its environment), and only the client has a network with a route out.
Usage: python3 check.py RESOLVED.yml
"""
import re
import sys

import yaml

SECRET_NAMES = re.compile(r"TOKEN|CREDENTIAL|PASSWORD|SECRET|KEY", re.I)


def problems(doc):
    services = doc.get("services", {})
    networks = doc.get("networks", {}) or {}
    if set(services) != {"adapter", "client"}:
        yield f"services are {sorted(services)}, expected adapter and client"
    for name, svc in services.items():
        if svc.get("read_only") is not True:
            yield f"{name}: read_only is not true"
        if [c.upper() for c in svc.get("cap_drop", [])] != ["ALL"]:
            yield f"{name}: cap_drop is {svc.get('cap_drop')}, not [ALL]"
        if svc.get("cap_add"):
            yield f"{name}: cap_add {svc['cap_add']}"
        if not any(o.replace(" ", "") in ("no-new-privileges:true", "no-new-privileges")
                   for o in svc.get("security_opt", [])):
            yield f"{name}: no no-new-privileges in security_opt"
        user = str(svc.get("user", ""))
        if not user or user.split(":")[0] in ("0", "root"):
            yield f"{name}: user is {user!r}, not a non-root uid"
        if svc.get("ports") or svc.get("expose"):
            yield f"{name}: publishes or exposes {svc.get('ports') or svc.get('expose')}"
        if svc.get("privileged"):
            yield f"{name}: privileged"
        if svc.get("network_mode") in ("host",):
            yield f"{name}: network_mode host"
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        for var in env:
            if SECRET_NAMES.search(var) and not var.endswith("_FILE"):
                yield f"{name}: secret-looking variable {var} in the environment"
        if not svc.get("healthcheck", {}).get("test"):
            yield f"{name}: no healthcheck"
        if not svc.get("secrets"):
            yield f"{name}: takes no secrets as files"
    adapter_nets = services.get("adapter", {}).get("networks", {}) or {}
    for net in adapter_nets:
        if not (networks.get(net) or {}).get("internal"):
            yield f"adapter: network {net} is not internal (the adapter must have no route out)"
    client = services.get("client", {})
    if not client.get("secrets") or not any(
            (s if isinstance(s, str) else s.get("source")) == "enrolment_token" for s in client["secrets"]):
        yield "client: the enrolment token is not a secret"
    for section in ("secrets",):
        for sname, sdef in (doc.get(section) or {}).items():
            if "environment" in (sdef or {}):
                yield f"secret {sname} comes from an environment variable"


def main():
    with open(sys.argv[1]) as f:
        doc = yaml.safe_load(f)
    found = list(problems(doc))
    for p in found:
        print(f"FAIL  {p}", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
