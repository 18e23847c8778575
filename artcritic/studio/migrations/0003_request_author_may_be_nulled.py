"""Requests stay as submitted, but deleting their author may null the author column."""

from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION studio_generationrequest_refuse_update() RETURNS trigger AS $$
BEGIN
    -- The only change allowed is ON DELETE SET NULL of the author: settings never change.
    IF NEW.author_id IS NULL
       AND to_jsonb(NEW) - 'author_id' = to_jsonb(OLD) - 'author_id' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'Generation requests are stored as submitted and never edited (studio_generationrequest id %).', OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""

REVERSE_SQL = """
CREATE OR REPLACE FUNCTION studio_generationrequest_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'Generation requests are stored as submitted and never edited (studio_generationrequest id %).', OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    dependencies = [("studio", "0002_immutable_rows")]
    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
