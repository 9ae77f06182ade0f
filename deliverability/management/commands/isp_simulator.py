from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from deliverability import isp_simulator


class Command(BaseCommand):
    help = "Run the local ISP simulator: an SMTP server that accepts, defers, rejects or times out by rule."
    # It needs no database and starts with `make run`; the web process runs the checks.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=2525)
        parser.add_argument("--rules", metavar="FILE", help="JSON rules, checked before the defaults.")
        parser.add_argument("--slow-seconds", type=float, default=isp_simulator.DEFAULT_SLOW_SECONDS)
        parser.add_argument(
            "--timeout-hold-seconds",
            type=float,
            default=isp_simulator.DEFAULT_TIMEOUT_HOLD_SECONDS,
            help="How long a timeout… recipient's RCPT goes unanswered before the server hangs up.",
        )
        parser.add_argument(
            "--no-readers",
            dest="readers",
            action="store_false",
            help="reader…, apple… and scanner… mailboxes do not fetch the messages' pixels and links.",
        )
        parser.add_argument("--tls-cert", metavar="PEM", help="Offer STARTTLS with this certificate chain.")
        parser.add_argument("--tls-key", metavar="PEM", help="The private key of --tls-cert.")

    def handle(
        self, *args, host, port, rules, slow_seconds, timeout_hold_seconds, readers, tls_cert, tls_key, **options
    ):
        if bool(tls_cert) != bool(tls_key):
            raise CommandError("--tls-cert and --tls-key go together.")
        try:
            loaded = (
                isp_simulator.Rules.from_file(rules, slow_seconds=slow_seconds)
                if rules
                else isp_simulator.Rules.default(slow_seconds=slow_seconds)
            )
            context = isp_simulator.tls_context(cert=tls_cert, key=tls_key) if tls_cert else None
        except (isp_simulator.RulesError, OSError) as error:
            raise CommandError(str(error)) from error
        simulator = isp_simulator.IspSimulator(
            host=host,
            port=port,
            rules=loaded,
            timeout_hold_seconds=timeout_hold_seconds,
            tls_context=context,
            readers=readers,
        )
        # aiosmtpd logs every connection and command at INFO; our one line per recipient and message is enough.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        try:
            simulator.start()
        except OSError as error:
            raise CommandError(f"cannot listen on {host}:{port}: {error}") from error
        self.stdout.write(f"ISP simulator listening on {host}:{simulator.port}{' (STARTTLS)' if context else ''}")
        for line in loaded.describe():
            self.stdout.write(f"  {line}")
        if readers:
            for prefix, reading in isp_simulator.READERS.items():
                self.stdout.write(f"  {prefix}…@ reads: {reading.describe()}")
        self.stdout.flush()
        # honcho and `kill` stop processes with SIGTERM: shut down as cleanly as on Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.stop()
