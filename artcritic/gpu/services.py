"""State changes of hardware profiles: loading profile files (activation is jobs.profile_switch)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from artcritic.audit.services import audit_record
from artcritic.gpu.models import HardwareProfile
from artcritic.gpu.profiles import Profile, ProfileError, profile_read

SOURCE_PATH_MAX = HardwareProfile._meta.get_field("source_path").max_length or 500


def _absolute(path: Path) -> Path:
    """The absolute, normalised path, without following symlinks (a link keeps its name)."""
    return Path(os.path.abspath(path))


def _source_path(path: Path) -> str:
    """Where a profile came from: relative to the checkout when inside it, else absolute."""
    absolute = _absolute(path)
    try:
        return str(absolute.relative_to(settings.BASE_DIR))
    except ValueError:
        return str(absolute)


def _profiles_validate(paths: Sequence[Path]) -> list[tuple[Path, Profile, str]]:
    """Read every file; collect every problem before refusing, so one run shows them all."""
    if isinstance(paths, str | Path):
        raise TypeError("paths must be a sequence of paths, not a single path")
    if not paths:
        raise ProfileError("No profile files were given; nothing was loaded.")
    valid: list[tuple[Path, Profile, str]] = []
    problems: list[str] = []
    bad: set[Path] = set()
    by_name: dict[str, Path] = {}
    # Each file once (however it was spelled); messages keep the spelling the caller used.
    files: list[Path] = []
    for path in paths:
        if all(_absolute(path) != _absolute(other) for other in files):
            files.append(Path(path))
    for path in files:
        try:
            profile, sha256 = profile_read(path)
        except ProfileError as exc:
            problems.append(str(exc))
            bad.add(path)
            continue
        if len(_source_path(path)) > SOURCE_PATH_MAX:
            problems.append(f"{path}: the path is longer than {SOURCE_PATH_MAX} characters")
            bad.add(path)
        elif profile.name in by_name:
            problems.append(
                f"{path}: name: profile {profile.name!r} is also defined by {by_name[profile.name]}"
            )
            bad.add(path)
        else:
            by_name[profile.name] = path
            valid.append((path, profile, sha256))
    if problems:
        raise ProfileError(
            f"{len(bad)} of {len(files)} profile file(s) are invalid; nothing was loaded.\n"
            + "\n".join(problems)
        )
    return valid


def _profile_upsert(path: Path, profile: Profile, sha256: str) -> tuple[HardwareProfile, str]:
    """Create or update one row; an unchanged file leaves the row untouched."""
    fields: dict[str, Any] = {
        "data": profile.model_dump(mode="json"),
        "source_path": _source_path(path),
        "source_sha256": sha256,
        "simulated": profile.simulated,
        "description": profile.description,
    }
    row = HardwareProfile.objects.select_for_update().filter(name=profile.name).first()
    if row is None:
        return HardwareProfile.objects.create(name=profile.name, **fields), "created"
    if all(getattr(row, key) == value for key, value in fields.items()):
        return row, "unchanged"
    for key, value in fields.items():
        setattr(row, key, value)
    row.save()
    return row, "updated"


def profiles_load(paths: Sequence[Path], *, actor: Any = None) -> list[HardwareProfile]:
    """Validate all profile files, then upsert them together; any error loads nothing."""
    valid = _profiles_validate(paths)
    rows: list[HardwareProfile] = []
    changes: list[dict[str, str]] = []
    with transaction.atomic():
        for path, profile, sha256 in valid:
            row, change = _profile_upsert(path, profile, sha256)
            rows.append(row)
            changes.append(
                {"name": row.name, "change": change, "sha256": sha256, "source": row.source_path}
            )
        counts = {c: sum(1 for x in changes if x["change"] == c) for c in ("created", "updated")}
        audit_record(
            "profiles.load",
            f"Loaded {len(rows)} hardware profile(s): {', '.join(r.name for r in rows)} "
            f"({counts['created']} created, {counts['updated']} updated, "
            f"{len(rows) - sum(counts.values())} unchanged).",
            actor=actor,
            data={"profiles": changes},
        )
    return rows
