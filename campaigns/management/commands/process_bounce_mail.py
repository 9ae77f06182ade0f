import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from campaigns.inbound import process_mail

# sysexits.h: the mail server keeps the message and tries the pipe again later.
EX_TEMPFAIL = 75


class Command(BaseCommand):
    help = (
        "Read one bounce, complaint, auto-reply or unsubscribe message (a file, or standard input) and record "
        "what it says. For a mail server's pipe, e.g. Postfix's master.cf: 'bounces unix - n n - - pipe "
        "user=deliverwell argv=.../manage.py process_bounce_mail --recipient ${recipient}'."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", type=Path, help="The message (RFC 5322); standard input when left out.")
        parser.add_argument("--recipient", default="", help="The envelope recipient (the VERP address it came to).")

    def handle(self, *args, file: Path | None, recipient: str, **options):
        if file is not None and not file.is_file():
            raise CommandError(f"{file}: no such file.")
        raw = file.read_bytes() if file is not None else sys.stdin.buffer.read()
        if not raw.strip():
            raise CommandError("The message is empty.")
        try:
            processed = process_mail(raw, now=timezone.now(), envelope_recipient=recipient)
        except DatabaseError as exc:
            self.stderr.write(f"Database unavailable, try again later: {exc}")
            sys.exit(EX_TEMPFAIL)
        self.stdout.write(str(processed))
