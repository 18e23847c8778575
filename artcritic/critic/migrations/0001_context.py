import django.db.models.deletion
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("studio", "0007_review_indexes")]

    operations = [
        # pg_trgm: the similarity of prompts that picks the examples the Critic is shown.
        TrigramExtension(),
        migrations.CreateModel(
            name="ShownContext",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("decisions_limit", models.PositiveSmallIntegerField(help_text="k: prior decisions shown.")),
                ("thumbnails_limit", models.PositiveSmallIntegerField(help_text="m: thumbnails attached.")),
                ("examples", models.JSONField(default=list)),
                ("prompt_tokens", models.PositiveIntegerField(help_text="Counted before sending.")),
                ("image_tokens", models.PositiveIntegerField(help_text="All images, by Qwen-VL patching.")),
                ("count_method", models.CharField(max_length=16)),
                ("max_model_len", models.PositiveIntegerField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "review",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="shown_context",
                        to="studio.criticreview",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("thumbnails_limit__lte", models.F("decisions_limit"))),
                        name="shown_thumbnails_within_decisions",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("count_method__in", ["tokenizer", "bound"])),
                        name="shown_count_method_valid",
                    ),
                ],
            },
        ),
    ]
