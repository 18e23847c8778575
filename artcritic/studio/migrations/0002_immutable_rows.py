"""A database rule, not a convention: rows of studio_generationrequest cannot be updated."""

from django.db import migrations

SQL = """
CREATE FUNCTION studio_generationrequest_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'Generation requests are stored as submitted and never edited (studio_generationrequest id %).', OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER studio_generationrequest_no_update BEFORE UPDATE ON studio_generationrequest
    FOR EACH ROW EXECUTE FUNCTION studio_generationrequest_refuse_update();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS studio_generationrequest_no_update ON studio_generationrequest;
DROP FUNCTION IF EXISTS studio_generationrequest_refuse_update();
"""


class Migration(migrations.Migration):
    dependencies = [("studio", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
