"""devstack: the embedded local stack.

devstack infra            start Kafka (KRaft), PostgreSQL and the OCI registry (idempotent)
devstack up [--infra-only] infra, Kafka topics, every service, portal, gateway, node agents,
                           the demo tenant and its user (printed)
devstack down             stop everything (state under .state/ is kept)
devstack status           each process: pid, alive, /readyz
devstack logs NAME        follow a process's log (--no-follow: print the last 200 lines)
devstack restart NAME     stop and start one process (kafka and postgres too)
devstack kill NAME        SIGKILL one process (chaos)
devstack kafka-env [PRINCIPAL]  print `export GPUCLOUD_KAFKA_*=...` for a Kafka principal (admin)
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time

from devstack import credentials, fleet, infra, kafka, mail, oci, postgres, stack, strays, supervise


def _table(rows: list[stack.Row]) -> None:
    header = ("PROCESS", "PID", "URL", "STATE")
    cells = [header, *((r.name, str(r.pid or "-"), r.url, r.state) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for cell in cells:
        print("  ".join(v.ljust(w) for v, w in zip(cell, widths, strict=True)).rstrip())


def _print_infra(i: infra.Infra) -> None:
    print(f"Kafka bootstrap:  {i.kafka_bootstrap}")
    if i.oci_registry is not None:
        print(f"OCI registry:     {i.oci_registry.url}  (user {i.oci_registry.username})")
    print(
        f"PostgreSQL:       127.0.0.1:{i.pg_port}  (role {credentials.ADMIN_ROLE}; passwords in "
        f"{credentials.path()})"
    )


def cmd_infra(_args: argparse.Namespace) -> int:
    started = time.monotonic()
    i = infra.ensure_infra()
    _print_infra(i)
    print(f"infra ready in {time.monotonic() - started:.1f}s")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    i, rows = stack.up(
        infra_only=args.infra_only, log=lambda m: print(f"devstack: {m}", flush=True)
    )
    print()
    if rows:
        _table(rows)
        print()
        gateway = stack.processes.url(fleet.load().gateway)
        print(f"  Portal:           {gateway}/")
        print(f"  Gateway:          {gateway}")
        print(f"  Fleet status:     {gateway}/v1/status")
        print(
            f"  Demo sign-in:     {stack.DEMO_EMAIL} / {credentials.password('demo_user_password')}"
        )
        print(f"  Operator token:   key '{credentials.OPERATOR_TOKEN}' in {credentials.path()}")
    _print_infra(i)
    print(f"up in {time.monotonic() - started:.1f}s; logs under {supervise.logs_dir()}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = stack.down()
    names = [n for n, pid in stopped.items() if pid]
    print(f"stopped: {', '.join(names) if names else 'nothing was running'}")
    if args.everywhere:
        others = strays.find()
        for s in others:
            print(f"stopping {s.name} (pid {s.pid}) of {s.where}")
        strays.stop(others)
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    _table(stack.status())
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    name = args.name
    if name not in (kafka.NAME, postgres.NAME, oci.NAME):
        name = fleet.load().find(name).name
    log = supervise.log_file(name)
    if not log.exists():
        print(f"devstack: no log yet for {name} ({log})", file=sys.stderr)
        return 1
    if args.no_follow:
        print(supervise.tail(log, 200))
        return 0
    tail = shutil.which("tail") or "tail"
    os.execv(tail, [tail, "-n", "200", "-F", str(log)])  # noqa: S606 (trusted argv)
    return 0  # not reached


def cmd_restart(args: argparse.Namespace) -> int:
    _table([stack.restart(args.name)])
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    pid = stack.kill(args.name)
    print(f"killed {args.name} (pid {pid})" if pid else f"{args.name} was not running")
    return 0


def cmd_kafka_env(args: argparse.Namespace) -> int:
    """For tools run by hand against the local broker, e.g.
    eval "$(uv run devstack kafka-env)"; uv run python -m platformkit.dlq replay <topic>"""
    for key, value in kafka.client_env(fleet.load(), args.principal).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_mail(args: argparse.Namespace) -> int:
    """The messages the local SMTP sink received (iam's verification and invitation mail)."""
    found = mail.messages(to=args.to)
    if args.show:
        for m in found[-args.show :]:
            print(f"==== {m.path.name}\nTo: {m.to}\nSubject: {m.subject}\n\n{m.body}")
        return 0
    if not found:
        print(f"no mail in {mail.folder()}")
    for m in found:
        print(f"{m.path.name:36} {m.to:40} {m.subject}")
        if m.link:
            print(f"    {m.link}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("infra", help="start Kafka and PostgreSQL").set_defaults(func=cmd_infra)
    up = sub.add_parser("up", help="start the whole platform")
    up.add_argument("--infra-only", action="store_true", help="only Kafka and PostgreSQL")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop everything")
    down.add_argument(
        "--everywhere",
        action="store_true",
        help="also stop the stacks of other checkouts or state folders (they hold the ports)",
    )
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="what runs and whether it is healthy").set_defaults(
        func=cmd_status
    )
    logs = sub.add_parser("logs", help="follow one process's log")
    logs.add_argument("name")
    logs.add_argument("--no-follow", action="store_true", help="print the last 200 lines")
    logs.set_defaults(func=cmd_logs)
    restart = sub.add_parser("restart", help="restart one process")
    restart.add_argument("name")
    restart.set_defaults(func=cmd_restart)
    kill = sub.add_parser("kill", help="SIGKILL one process")
    kill.add_argument("name")
    kill.set_defaults(func=cmd_kill)
    inbox = sub.add_parser("mail", help="list the messages the local mail sink received")
    inbox.add_argument("--to", help="only those to this address")
    inbox.add_argument("--show", type=int, default=0, metavar="N", help="print the last N in full")
    inbox.set_defaults(func=cmd_mail)
    env = sub.add_parser("kafka-env", help="the GPUCLOUD_KAFKA_* settings of a Kafka principal")
    env.add_argument("principal", nargs="?", default=kafka.ADMIN, help="admin or a service's name")
    env.set_defaults(func=cmd_kafka_env)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        kafka.KafkaError,
        postgres.PostgresError,
        oci.OciRegistryError,
        stack.StackError,
    ) as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"devstack: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
