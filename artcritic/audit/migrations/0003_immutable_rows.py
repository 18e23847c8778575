"""A database rule, not a convention: rows of audit_auditevent cannot be updated."""

from django.db import migrations

SQL = """
CREATE FUNCTION audit_auditevent_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'Audit events are never edited (audit_auditevent id %).', OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_auditevent_no_update BEFORE UPDATE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_auditevent_refuse_update();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS audit_auditevent_no_update ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_auditevent_refuse_update();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
