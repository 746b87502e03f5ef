#!/usr/bin/env python3
"""A lastmile client in Python, over gRPC, with stubs generated from proto/.

This file generates nothing. Generate the stubs first (docs/integration.md,
"A Python client"), then run it against a running server:

    python -m grpc_tools.protoc -I proto --python_out=STUBS \
        --grpc_python_out=STUBS proto/lastmile/v1/dispatch.proto
    python lastmile_example.py 127.0.0.1:50051 STUBS

Arguments: the server address (host:port, plaintext), then optionally the
stubs directory; without it, the directory comes from LASTMILE_STUBS.
LASTMILE_TOKEN, if set, is sent as `authorization: Bearer <token>` on every
call (needed when the server has [auth] on; role dispatcher, since the example
closes the incident it reports).

What it does: Ping, ReportIncident (a fire, severity 3, at 28.58/121.37),
GetIncident of the returned id, the same ReportIncident again (which must come
back with duplicate = true and the same id), and CloseIncident. It prints what
each answer says and exits 1 if any check fails (2 for bad arguments).
"""

import os
import sys
import time

CALL_TIMEOUT_S = 10.0  # every call has a deadline: a hung server fails the run


def load_stubs(stubs_dir):
    """Import the generated modules from stubs_dir (lastmile/v1/dispatch_pb2*.py)."""
    if not os.path.isfile(os.path.join(stubs_dir, "lastmile", "v1", "dispatch_pb2.py")):
        print(f"usage error: no lastmile/v1/dispatch_pb2.py under {stubs_dir!r}; generate the stubs first", file=sys.stderr)
        sys.exit(2)
    sys.path.insert(0, stubs_dir)
    # The generated _grpc module imports "lastmile.v1.dispatch_pb2", so the
    # stubs directory itself must be on sys.path (lastmile/ and v1/ are
    # namespace packages: protoc writes no __init__.py).
    from lastmile.v1 import dispatch_pb2, dispatch_pb2_grpc  # noqa: E402

    return dispatch_pb2, dispatch_pb2_grpc


class Checks:
    """Counts checks; a failed one is printed and makes the exit status 1."""

    def __init__(self):
        self.failed = 0

    def expect(self, condition, what):
        if not condition:
            self.failed += 1
            print(f"  CHECK FAILED: {what}")
        return condition


def tier_name(pb, tier):
    # TIER_3_MIN -> "tier-3", the way the bundled client prints tiers.
    return "tier-" + pb.Tier.Name(tier).removeprefix("TIER_").removesuffix("_MIN")


def short(pb, enum, value, prefix):
    return enum.Name(value).removeprefix(prefix)


def print_incident(pb, incident):
    print(
        f"  {incident.id}  external_id={incident.external_id}  "
        f"{short(pb, pb.IncidentKind, incident.kind, 'INCIDENT_KIND_')}  "
        f"severity {incident.severity}  "
        f"{short(pb, pb.IncidentStatus, incident.status, 'INCIDENT_STATUS_')}  "
        f"{incident.town} {incident.village}".rstrip()
    )
    if incident.grid_id:
        print(f"    grid {incident.grid_id}  worker {incident.grid_worker.name}  {incident.grid_worker.contact}")
    for tier in incident.tiers:
        line = (
            f"    {tier_name(pb, tier.tier):<8} target {tier.target_s:>3} s  required {tier.required}  "
            f"{short(pb, pb.TierState, tier.state, 'TIER_STATE_')}"
        )
        if tier.note:
            line += f"  ({tier.note})"
        print(line)
        for a in tier.assignments:
            reach = "within target" if a.within_target else "BEYOND target"
            print(
                f"      {a.unit_id:<18} {a.distance_m:>6.0f} m  eta {a.eta_s:>4} s  {reach}  "
                f"{short(pb, pb.AssignmentState, a.state, 'ASSIGNMENT_STATE_')}  {a.unit_name}"
            )


def run(address, pb, pb_grpc, token):
    import grpc

    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    checks = Checks()
    # Unique per run, so a run against a long-lived server reports a new incident.
    external_id = f"py-example-{os.getpid()}-{int(time.time() * 1000)}"

    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT_S)
        dispatch = pb_grpc.DispatchStub(channel)

        def call(method, request):
            return method(request, timeout=CALL_TIMEOUT_S, metadata=metadata)

        print(f"Ping {address}")
        call(dispatch.Ping, pb.PingRequest())
        print("  ok")

        report = pb.ReportIncidentRequest(
            external_id=external_id,
            location=pb.LatLng(lat=28.58, lng=121.37),
            kind=pb.INCIDENT_KIND_FIRE,
            severity=3,
            description="lastmile Python example",
        )
        print(f"ReportIncident external_id={external_id}")
        first = call(dispatch.ReportIncident, report)
        incident = first.incident
        print_incident(pb, incident)
        checks.expect(incident.id != "", "the incident has an id")
        checks.expect(not first.duplicate, "a first report is not a duplicate")
        checks.expect(incident.status == pb.INCIDENT_STATUS_OPEN, "the incident is OPEN")
        checks.expect(len(incident.tiers) > 0, "the response plan has tiers")

        print(f"GetIncident {incident.id}")
        got = call(dispatch.GetIncident, pb.GetIncidentRequest(id=incident.id))
        print_incident(pb, got)
        checks.expect(got.id == incident.id, "GetIncident returns the incident asked for")
        checks.expect(got.external_id == external_id, "the stored external_id is the one sent")

        print(f"ReportIncident again, same external_id={external_id}")
        again = call(dispatch.ReportIncident, report)
        print(f"  {again.incident.id}  duplicate={again.duplicate}")
        checks.expect(again.duplicate, "a repeated external_id is answered duplicate = true")
        checks.expect(again.incident.id == incident.id, "the repeat returns the stored incident")

        print(f"CloseIncident {incident.id}")
        closed = call(
            dispatch.CloseIncident,
            pb.CloseIncidentRequest(id=incident.id, reason="python example: done"),
        ).incident
        print_incident(pb, closed)
        checks.expect(closed.status == pb.INCIDENT_STATUS_CLOSED, "the incident is CLOSED")

    return checks.failed


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: lastmile_example.py HOST:PORT [STUBS_DIR]   (or LASTMILE_STUBS=STUBS_DIR)", file=sys.stderr)
        return 2
    address = argv[1]
    stubs_dir = argv[2] if len(argv) == 3 else os.environ.get("LASTMILE_STUBS", "")
    if not stubs_dir:
        print("usage error: give the stubs directory as the second argument or in LASTMILE_STUBS", file=sys.stderr)
        return 2
    pb, pb_grpc = load_stubs(stubs_dir)

    import grpc

    try:
        failed = run(address, pb, pb_grpc, os.environ.get("LASTMILE_TOKEN", ""))
    except grpc.FutureTimeoutError:
        print(f"FAILED: no connection to {address} within {CALL_TIMEOUT_S:.0f} s")
        return 1
    except grpc.RpcError as err:
        print(f"FAILED: the server answered {err.code().name}: {err.details()}")
        return 1
    if failed:
        print(f"FAILED: {failed} check(s)")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
