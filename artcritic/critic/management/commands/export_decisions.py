"""manage.py export_decisions PROJECT --format jsonl|csv [--output FILE]"""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from artcritic.critic.export import FORMATS, ExportFormatInvalid, export_lines
from artcritic.studio.models import Project


class Command(BaseCommand):
    help = (
        "Write a project's decisions data set (image keys, prompt, exact settings, every "
        "member's decisions with notes, Critic reviews and calibrated verdicts) to stdout "
        "or --output."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("project", help="the project's id, or its exact name")
        parser.add_argument("--format", choices=FORMATS, default="jsonl")
        parser.add_argument("--output", help="a file to write (default: stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        project = _project(options["project"])
        try:
            lines = export_lines(project, options["format"])
        except ExportFormatInvalid as exc:
            raise CommandError(f"{exc}. Next: pass --format jsonl or --format csv.") from None
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8", newline="") as out:
                count = sum(1 for line in lines if out.write(line) is not None)
            # Lines on stderr so that stdout stays the data when no file is given.
            sys.stderr.write(f"Wrote {count} lines of {project.name!r} to {options['output']}\n")
        else:
            for line in lines:
                self.stdout.write(line, ending="")


def _project(value: str) -> Project:
    if value.isascii() and value.isdigit() and len(value) <= 18:
        project = Project.objects.filter(pk=int(value)).first()
    else:
        matches = list(Project.objects.filter(name=value)[:2])
        if len(matches) > 1:
            raise CommandError(
                f"{len(matches)} or more projects are named {value!r}; give the project's id."
            )
        project = matches[0] if matches else None
    if project is None:
        raise CommandError(
            f"No project {value[:80]!r}. Next: give a project id or exact name "
            "(`manage.py shell -c 'from artcritic.studio.models import Project; "
            'print(list(Project.objects.values_list("id", "name")))\'`).'
        )
    return project
