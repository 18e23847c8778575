"""A database rule, not a convention: rows of jobs_jobphase cannot be updated."""

from django.db import migrations

SQL = """
CREATE FUNCTION jobs_jobphase_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'Phase history is append-only (jobs_jobphase id %).', OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER jobs_jobphase_no_update BEFORE UPDATE ON jobs_jobphase
    FOR EACH ROW EXECUTE FUNCTION jobs_jobphase_refuse_update();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS jobs_jobphase_no_update ON jobs_jobphase;
DROP FUNCTION IF EXISTS jobs_jobphase_refuse_update();
"""


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
