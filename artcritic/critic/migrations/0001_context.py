# Placeholder for part A's 0001_context (replaced by it at merge): the pg_trgm extension only.
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    dependencies: list[tuple[str, str]] = []

    operations = [TrigramExtension()]
