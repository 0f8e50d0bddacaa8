"""The `fedistream` command: serve, init, passwd, post, import, export, backup, doctor.

Every command reads the same settings (defaults < fedistream.toml < FEDISTREAM_* env < flags), so a
command run beside a running server works on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import tomli_w

import fedistream
from fedistream.core.urls import Urls
from fedistream.errors import FedistreamError
from fedistream.federation.http import build_http_client
from fedistream.federation.resolver import ActorResolver
from fedistream.federation.signing import Signer
from fedistream.services.keys import ensure_keypair
from fedistream.settings import (
    DEFAULT_DATA_DIR,
    Settings,
    SettingsError,
    load_settings,
    settings_to_toml,
)
from fedistream.store.db import Database

CommandFn = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    for name in ("host", "port", "base_url"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    return load_settings(config_path=args.config, **overrides)


async def _open(settings: Settings) -> Database:
    return await Database.open(settings.db_path)


# --- serve -----------------------------------------------------------------------------------


async def _prepare(settings: Settings) -> str | None:
    from fedistream.services.owner import ensure_owner

    db = await _open(settings)
    try:
        return await ensure_owner(db, settings)
    finally:
        await db.close()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from fedistream import logs
    from fedistream.app import build_app

    log_output = logs.configure(args.log_level, args.log_format)
    generated = asyncio.run(_prepare(settings))
    if generated:
        print(
            "\n  Owner account created for " + settings.handle + "\n"
            "  Password (shown once): " + generated + "\n"
            "  Log in at " + settings.url("/admin") + "  — change it with `fedistream passwd`.\n",
            flush=True,
        )
    scheme = "https" if settings.tls_certfile else "http"
    print(
        f"fedistream serving {settings.base_url} on {scheme}://{settings.host}:{settings.port}",
        flush=True,
    )
    uvicorn.run(
        build_app(settings, access_log=log_output.event_writer("fedistream.access")),
        host=settings.host,
        port=settings.port,
        proxy_headers=bool(settings.trusted_proxy),
        forwarded_allow_ips=settings.trusted_proxy or "127.0.0.1",
        log_level=args.log_level,
        # Logging is configured above (logfmt/JSON lines); requests are logged by the app's
        # own middleware (web.access_log), so uvicorn's access log would only repeat them.
        log_config=None,
        access_log=False,
        server_header=False,
        ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
        ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
    )
    return 0


# --- init ------------------------------------------------------------------------------------


def _ask(prompt: str, default: str, interactive: bool) -> str:
    if not interactive:
        return default
    answer = input(f"{prompt} [{default}]: ").strip()
    return answer or default


def cmd_init(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty() and not args.yes
    base_url = _ask(
        "Base URL (https://your.domain)", args.base_url or "http://127.0.0.1:8000", interactive
    )
    username = _ask("Username", args.username or "owner", interactive)
    display_name = _ask("Display name", args.display_name or username, interactive)
    data_dir = Path(_ask("Data directory", str(args.data_dir or DEFAULT_DATA_DIR), interactive))
    try:
        settings = load_settings(
            env={},
            config_path=None,
            base_url=base_url,
            username=username,
            display_name=display_name,
            data_dir=data_dir,
        )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = settings.config_path
    if path.exists() and not args.force:
        print(f"error: {path} already exists (use --force to overwrite)", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(settings_to_toml(settings)))
    print(f"Wrote {path}")
    if settings.data_dir != Path(DEFAULT_DATA_DIR):
        print(f"Start with: FEDISTREAM_DATA_DIR={settings.data_dir} fedistream serve")
    else:
        print("Start with: fedistream serve")
    return 0


# --- passwd ----------------------------------------------------------------------------------


async def cmd_passwd(args: argparse.Namespace, settings: Settings) -> int:
    from fedistream.services.owner import set_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("New owner password: ")
        if getpass.getpass("Repeat it: ") != password:
            print("error: the two passwords differ; nothing changed", file=sys.stderr)
            return 2
    db = await _open(settings)
    try:
        await set_password(db, password)
    finally:
        await db.close()
    print("Password changed; every open session was logged out.")
    return 0


@asynccontextmanager
async def _actor_directory(db: Database, settings: Settings) -> AsyncIterator[ActorResolver]:
    """The same signed, SSRF-safe lookups the server uses (for @mentions written in the shell)."""
    keys = await ensure_keypair(db)
    signer = Signer(Urls(settings.base_url).key_id, keys.private_pem, threads=1)
    client = build_http_client(
        allow_private_networks=settings.allow_private_networks,
        user_agent=f"fedistream/{fedistream.__version__} (+{settings.base_url}/)",
    )
    try:
        resolver = ActorResolver(
            db, client, signer, allow_private_networks=settings.allow_private_networks
        )
        await resolver.load_known()
        yield resolver
    finally:
        await client.aclose()
        signer.close()


def _read_text(path: Path) -> str:
    """Read a note file (blocking I/O is fine here: the CLI has nothing else running)."""
    return path.read_text("utf-8")


# --- post ------------------------------------------------------------------------------------


async def cmd_post(args: argparse.Namespace, settings: Settings) -> int:
    from fedistream.services.owner import ensure_owner
    from fedistream.services.posts import Draft, publish

    if args.file:
        source = sys.stdin.read() if args.file == "-" else _read_text(Path(args.file))
    elif args.text:
        source = args.text
    else:
        print("error: give the thought as an argument or with -f FILE", file=sys.stderr)
        return 2
    db = await _open(settings)
    try:
        await ensure_owner(db, settings)
        async with _actor_directory(db, settings) as directory:
            post = await publish(
                db,
                Draft(source=source, title=args.title or "", summary=args.cw or ""),
                max_chars=settings.max_post_chars,
                urls=Urls(settings.base_url),
                directory=directory,
            )
    finally:
        await db.close()
    print(settings.url(f"/p/{post.id}"))
    return 0


# --- argument parsing ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedistream", description="A single-user, federated microblog."
    )
    parser.add_argument("--config", type=Path, help="path to fedistream.toml")
    parser.add_argument("--data-dir", type=Path, help="data directory (database, media, config)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--base-url")
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="logfmt lines or JSON"
    )

    init = sub.add_parser("init", help="write fedistream.toml (asks, or takes flags)")
    init.add_argument("--base-url")
    init.add_argument("--username")
    init.add_argument("--display-name")
    init.add_argument("--yes", "-y", action="store_true", help="don't ask; use flags/defaults")
    init.add_argument("--force", action="store_true", help="overwrite an existing config")

    passwd = sub.add_parser("passwd", help="set a new owner password")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )

    post = sub.add_parser("post", help="publish a thought")
    post.add_argument("text", nargs="?", help="the thought (Markdown)")
    post.add_argument("-f", "--file", help="read the thought from a file ('-' for stdin)")
    post.add_argument("--title")
    post.add_argument("--cw", help="content warning")

    from fedistream import cli_data, doctor

    cli_data.add_parsers(sub)
    doctor.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "init":
        return cmd_init(args)
    try:
        settings = _settings_from_args(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return cmd_serve(args, settings)
    commands: dict[str, CommandFn] = {"passwd": cmd_passwd, "post": cmd_post}
    from fedistream import cli_data, doctor

    commands.update(cli_data.COMMANDS)
    commands["doctor"] = doctor.cmd_doctor
    try:
        return asyncio.run(commands[args.command](args, settings))
    except FedistreamError as exc:
        print(f"error: {exc.public_message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
