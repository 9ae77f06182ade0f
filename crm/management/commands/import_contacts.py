import csv
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm.importing.engine import run_import
from crm.importing.flow import ERROR_REPORT_COLUMNS, error_report_rows
from crm.importing.presets import PRESETS
from crm.importing.reading import UnreadableFile
from crm.models import FieldPolicy, ImportBasis, ImportJob, LawfulBasis, SubscriptionType


class Command(BaseCommand):
    help = "Import contacts from another ESP's or CRM's export (CSV, or Mailchimp's ZIP)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--preset", choices=["auto", *PRESETS], default="auto")
        parser.add_argument(
            "--subscription-type", action="append", default=[], help="Name of a type to subscribe to (repeatable)."
        )
        parser.add_argument("--basis", choices=ImportBasis.values, default=ImportBasis.EVIDENCE)
        parser.add_argument("--attestation", default="", help="For --basis attested: the lawful basis you attest to.")
        parser.add_argument("--lawful-basis", choices=LawfulBasis.values, default=LawfulBasis.CONSENT)
        parser.add_argument("--fields", choices=FieldPolicy.values, default=FieldPolicy.FILL_BLANKS)
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FIELD=COLUMN",
            help="Generic CSVs: which column holds a field (email, first_name, …).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Report what would happen; change nothing.")
        parser.add_argument("--errors", type=Path, help="Write the rows that could not be imported to this CSV.")

    def handle(self, *args, file: Path, subscription_type: list[str], basis: str, attestation: str, **options):
        if not file.is_file():
            raise CommandError(f"{file}: no such file.")
        if basis == ImportBasis.ATTESTED and not attestation.strip():
            raise CommandError("--basis attested needs --attestation TEXT: the lawful basis you attest to.")
        types = list(SubscriptionType.objects.filter(name__in=subscription_type))
        missing = set(subscription_type) - {t.name for t in types}
        if missing:
            raise CommandError(f"Unknown subscription type(s): {', '.join(sorted(missing))}.")
        mapping = dict(item.split("=", 1) for item in options["map"] if "=" in item)
        job = ImportJob.objects.create(
            file_name=file.name,
            file_path=str(file.resolve()),
            preset=options["preset"],
            column_mapping=mapping,
            basis=basis,
            lawful_basis=options["lawful_basis"],
            attestation=attestation,
            field_policy=options["fields"],
            dry_run=options["dry_run"],
            created_at=timezone.now(),
        )
        job.subscription_types.set(types)
        try:
            counts = run_import(job, file, now=timezone.now(), progress=self.show_progress)
        except UnreadableFile as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write("")
        verb = "Would import" if job.dry_run else "Imported"
        self.stdout.write(f"{verb} {file.name} (job #{job.pk}):")
        for name, value in counts.as_dict().items():
            self.stdout.write(f"  {name.replace('_', ' '):<12} {value:>10,}")
        problems = job.problems.all()
        for problem in problems[:10]:
            self.stdout.write(f"  {problem.file_name} line {problem.line}: {problem.reason}")
        if options["errors"] and problems.exists():
            with options["errors"].open("w", newline="", encoding="utf-8") as report:
                writer = csv.writer(report)
                writer.writerow(ERROR_REPORT_COLUMNS)
                writer.writerows(error_report_rows(job))
            self.stdout.write(f"Error report: {options['errors']}")

    def show_progress(self, rows: int) -> None:
        sys.stderr.write(f"\r  read {rows:,} rows…")
        sys.stderr.flush()
