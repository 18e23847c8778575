"""Priority rules in the database, so every path (admin form, action, shell) obeys them.

Bounds: -100..100 (values set earlier outside them are brought inside first). And a job's
priority changes only while it waits: once claimed, finished or interrupted it is history.
"""

from django.db import migrations, models

CLAMP_SQL = "UPDATE jobs_job SET priority = LEAST(GREATEST(priority, -100), 100);"

TRIGGER_SQL = """
CREATE FUNCTION jobs_job_refuse_late_priority() RETURNS trigger AS $$
BEGIN
    IF NEW.priority IS DISTINCT FROM OLD.priority
       AND OLD.status NOT IN ('queued', 'admitted') THEN
        RAISE EXCEPTION 'Job % is %: its priority only changes while it waits.', OLD.id, OLD.status
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER jobs_job_priority_only_while_waiting BEFORE UPDATE OF priority ON jobs_job
    FOR EACH ROW EXECUTE FUNCTION jobs_job_refuse_late_priority();
"""

REVERSE_TRIGGER_SQL = """
DROP TRIGGER IF EXISTS jobs_job_priority_only_while_waiting ON jobs_job;
DROP FUNCTION IF EXISTS jobs_job_refuse_late_priority();
"""


class Migration(migrations.Migration):
    dependencies = [("jobs", "0004_job_runtime_version")]
    operations = [
        migrations.RunSQL(CLAMP_SQL, migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.CheckConstraint(
                condition=models.Q(priority__gte=-100, priority__lte=100),
                name="job_priority_in_range",
            ),
        ),
        migrations.RunSQL(TRIGGER_SQL, REVERSE_TRIGGER_SQL),
    ]
