"""Hardware profile files: strict validation, all-or-nothing loading, and GPU activation."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from artcritic.audit.models import AuditEvent
from artcritic.gpu.models import Gpu, HardwareProfile
from artcritic.gpu.profiles import GB, ProfileError, profile_from_data, profile_read
from artcritic.gpu.selectors import profile_active
from artcritic.gpu.services import profiles_load
from artcritic.jobs.profile_switch import gpu_activate

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "profiles").glob("*.toml"))
SIM = ROOT / "profiles" / "sim-32gb.toml"


def profile_variant(directory: Path, *edits: tuple[str, str], source: Path = SIM) -> Path:
    """A shipped profile with each (old, new) text edit applied once, under its own name."""
    text = source.read_text()
    for old, new in edits:
        assert text.count(old) == 1, f"edit target {old!r} must occur exactly once"
        text = text.replace(old, new)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / source.name
    path.write_text(text)
    return path


def rows() -> dict[str, tuple[Any, ...]]:
    return {
        p.name: (p.pk, p.data, p.source_sha256, p.description, p.updated_at)
        for p in HardwareProfile.objects.all()
    }


# --- the shipped files ---------------------------------------------------------------


def test_five_profiles_ship_with_the_repository() -> None:
    assert [p.stem for p in SHIPPED] == [
        "rtx-pro-6000-96gb",
        "rtx5090-32gb-compose-gpu1",  # the second GPU of a compose box (profile gpu2)
        "rtx5090-32gb-compose",  # files sort by name: "-" comes before "."
        "rtx5090-32gb",
        "sim-32gb",
    ]


def test_the_compose_profile_is_the_rtx5090_one_with_external_runtimes() -> None:
    base = profile_read(ROOT / "profiles" / "rtx5090-32gb.toml")[0]
    compose = profile_read(ROOT / "profiles" / "rtx5090-32gb-compose.toml")[0]

    # docker compose starts both runtimes; artcritic only reaches and releases them.
    assert compose.runtimes.comfyui.driver == "external"
    assert compose.runtimes.critic.driver == "external"
    assert compose.runtimes.comfyui.image == compose.runtimes.critic.image == ""
    assert compose.runtimes.comfyui.command == compose.runtimes.critic.command == []
    assert not compose.simulated
    # Every number is the RTX 5090's.
    assert compose.limits == base.limits
    assert compose.models == base.models
    assert compose.loras == base.loras
    assert compose.critic == base.critic
    assert compose.durations == base.durations
    for key in ("vram_total_gb", "reserve_gb", "host_ram_gb", "exclusive", "verify_timeout_s"):
        assert getattr(compose, key) == getattr(base, key), key
    assert compose.usable_bytes == base.usable_bytes == round(30.5 * GB)
    assert compose.are_exclusive("comfyui", "critic")
    for runtime in ("comfyui", "critic"):
        ours = getattr(compose.runtimes, runtime).model_dump()
        theirs = getattr(base.runtimes, runtime).model_dump()
        differing = {key for key in ours if ours[key] != theirs[key]}
        assert differing <= {"driver", "url", "image", "command", "container_name"}, runtime


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_profile_is_valid_and_named_after_its_file(path: Path) -> None:
    profile, sha256 = profile_read(path)

    assert profile.name == path.stem
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert 0 < profile.usable_bytes < profile.total_bytes


def test_only_the_sim_profile_is_simulated_and_only_the_96gb_one_shares_vram() -> None:
    profiles = {p.stem: profile_read(p)[0] for p in SHIPPED}

    assert {n for n, p in profiles.items() if p.simulated} == {"sim-32gb"}
    assert not profiles["rtx-pro-6000-96gb"].are_exclusive("comfyui", "critic")
    assert profiles["rtx5090-32gb"].are_exclusive("comfyui", "critic")
    assert profiles["rtx5090-32gb"].usable_bytes == round(30.5 * GB)


@pytest.mark.django_db
def test_the_shipped_profiles_load_and_come_back_from_the_database_unchanged() -> None:
    loaded = profiles_load(SHIPPED)

    assert [row.name for row in loaded] == [p.stem for p in SHIPPED]
    for path in SHIPPED:
        row = HardwareProfile.objects.get(name=path.stem)
        profile, sha256 = profile_read(path)
        assert profile_from_data(row.data) == profile
        assert row.source_sha256 == sha256
        assert row.source_path == f"profiles/{path.name}"
        assert row.simulated is profile.simulated
        assert row.description == profile.description


# --- what the strict schema refuses --------------------------------------------------

TOP = "(top level): Value error, "  # model-wide checks name their keys in the text

BAD_PROFILES = [
    pytest.param(
        [('name = "sim-32gb"\n', 'name = "sim-32gb"\nvram_totl_gb = 30.0\n')],
        ["vram_totl_gb: Extra inputs are not permitted"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        [("max_batch = 4", "max_batchh = 4")],
        ["limits.max_batchh: Extra inputs are not permitted", "limits.max_batch: Field required"],
        id="unknown-nested-key",
    ),
    pytest.param(
        [('params_billion = 3.5, dtype = "fp16"', 'params_billion = 3.5, dtyp = "fp16"')],
        ["models.sdxl.components.0.dtyp: Extra inputs", "models.sdxl.components.0.dtype: Field"],
        id="unknown-key-in-a-component",
    ),
    pytest.param(
        [("max_batch = 4", 'max_batch = "4"')],
        ["limits.max_batch: Input should be a valid integer"],
        id="string-for-an-integer",
    ),
    pytest.param(
        [("vram_total_gb = 32.0", 'vram_total_gb = "32 GB"')],
        ["vram_total_gb: Input should be a valid number"],
        id="string-for-a-float",
    ),
    pytest.param(
        [("max_batch = 4", "max_batch = 4.0")],
        ["limits.max_batch: Input should be a valid integer"],
        id="float-for-an-integer",
    ),
    pytest.param(
        [("max_batch = 4", "max_batch = true")],
        ["limits.max_batch: Input should be a valid integer"],
        id="boolean-for-an-integer",
    ),
    pytest.param(
        [("simulated = true", "simulated = 1")],
        ["simulated: Input should be a valid boolean"],
        id="integer-for-a-boolean",
    ),
    pytest.param(
        [('description = "Simulated 32 GB GPU', 'description = 2024-01-01\nx = "')],
        ["description: Input should be a valid string"],
        id="date-for-a-string",
    ),
    pytest.param(
        [("reserve_gb = 1.5", "reserve_gb = 32.0")],
        [TOP + "reserve_gb (32.0) must be below vram_total_gb (32.0)"],
        id="reserve-equal-to-total",
    ),
    pytest.param(
        [("reserve_gb = 1.5", "reserve_gb = 40.0")],
        [TOP + "reserve_gb (40.0) must be below vram_total_gb (32.0)"],
        id="reserve-above-total",
    ),
    pytest.param(
        [("vram_total_gb = 32.0", "vram_total_gb = -32.0")],
        ["vram_total_gb: Input should be greater than 0"],
        id="negative-vram",
    ),
    pytest.param(
        [("reserve_gb = 1.5", "reserve_gb = -1.5")],
        ["reserve_gb: Input should be greater than or equal to 0"],
        id="negative-reserve",
    ),
    pytest.param(
        [("vram_total_gb = 32.0", "vram_total_gb = nan")],
        ["vram_total_gb: "],
        id="nan-vram",
    ),
    pytest.param(
        [("vram_total_gb = 32.0", "vram_total_gb = inf")],
        ["vram_total_gb: Input should be a finite number"],
        id="infinite-vram",
    ),
    pytest.param(
        [("max_width = 1536", "max_width = 1530")],
        ["limits.max_width: Input should be a multiple of 8"],
        id="width-not-a-multiple-of-8",
    ),
    pytest.param(
        [("max_height = 1536", "max_height = 16384")],
        ["limits.max_height: Input should be less than or equal to 8192"],
        id="height-beyond-8192",
    ),
    pytest.param(
        [("max_batch = 4", "max_batch = 0")],
        ["limits.max_batch: Input should be greater than or equal to 1"],
        id="batch-of-zero",
    ),
    pytest.param(
        [("gpu_memory_utilization = 0.7", "gpu_memory_utilization = 1.5")],
        ["runtimes.critic.gpu_memory_utilization: Input should be less than or equal to 0.99"],
        id="gpu-memory-utilization-above-1",
    ),
    pytest.param(
        [("gpu_memory_utilization = 0.7", "gpu_memory_utilization = 0.0")],
        ["runtimes.critic.gpu_memory_utilization: Input should be greater than 0"],
        id="gpu-memory-utilization-zero",
    ),
    pytest.param(
        [('"flux-dev-bf16", "sdxl"]', '"flux-dev-bf16", "flux-schnell"]')],
        [TOP + "limits.model_modes names models not in [models]: ['flux-schnell']"],
        id="model-mode-naming-an-unknown-model",
    ),
    pytest.param(
        [("max_model_len = 8192", "max_model_len = 16384")],
        [TOP + "runtimes.critic.max_model_len exceeds the safe limits.critic_max_context"],
        id="max-model-len-beyond-the-safe-context",
    ),
    pytest.param(
        [("max_position_embeddings = 128000", "max_position_embeddings = 4096")],
        [TOP + "runtimes.critic.max_model_len exceeds the model's max_position_embeddings"],
        id="max-model-len-beyond-the-model",
    ),
    pytest.param(
        [('exclusive = [["comfyui", "critic"]]', 'exclusive = [["comfyui", "comfyui"]]')],
        [TOP + "exclusive group ['comfyui', 'comfyui'] must name at least two distinct runtimes"],
        id="exclusive-group-of-one-runtime",
    ),
    pytest.param(
        [('exclusive = [["comfyui", "critic"]]', 'exclusive = [["comfyui", "artist"]]')],
        ["exclusive.0.1: Input should be 'comfyui' or 'critic'"],
        id="exclusive-naming-an-unknown-runtime",
    ),
    pytest.param(
        [("[models.sdxl]", '[models."../../etc/passwd"]'), ('"flux-dev-bf16", "sdxl"]', '"x"]')],
        ["models.../../etc/passwd.[key]: String should match pattern"],
        id="hostile-model-name",
    ),
    pytest.param(
        [('kv_dtype = "bf16"', 'kv_dtype = "bf17"')],
        ["critic.kv_dtype: Input should be 'fp32', 'bf16'"],
        id="unknown-dtype",
    ),
    pytest.param(
        [('url = "http://127.0.0.1:18188"', 'url = "file:///etc/passwd"')],
        ["runtimes.comfyui.url: String should match pattern"],
        id="url-not-http",
    ),
    pytest.param(
        [('command = ["{python}", "-m", "artcritic.sim", "comfyui"', 'command = [1, "-m", "x"')],
        ["runtimes.comfyui.command.0: Input should be a valid string"],
        id="command-not-strings",
    ),
    pytest.param(
        [
            (
                'driver = "process"\nurl = "http://127.0.0.1:18000"',
                'driver = "docker"\nurl = "http://127.0.0.1:18000"',
            )
        ],
        ["runtimes.critic: Value error, driver 'docker' needs an image"],
        id="docker-driver-without-image",
    ),
    pytest.param(
        [('command = ["{python}", "-m", "artcritic.sim", "comfyui"', '# ["{python}", "comfyui"')],
        ["runtimes.comfyui: Value error, driver 'process' needs a command"],
        id="process-driver-without-command",
    ),
    pytest.param(
        [("comfyui_start = 8.0", "comfyui_start = -8.0")],
        ["durations.comfyui_start: Input should be greater than or equal to 0"],
        id="negative-duration",
    ),
    pytest.param(
        [('families = ["flux"]', "families = []")],
        ["loras.product-render.families: List should have at least 1 item"],
        id="lora-for-no-family",
    ),
]


@pytest.mark.parametrize(("edits", "messages"), BAD_PROFILES)
def test_an_invalid_profile_is_refused_naming_the_file_and_every_bad_key(
    tmp_path: Path, edits: list[tuple[str, str]], messages: list[str]
) -> None:
    path = profile_variant(tmp_path, *edits)

    with pytest.raises(ProfileError) as refused:
        profile_read(path)

    for message in messages:
        assert f"{path}: {message}" in str(refused.value)


def test_an_integer_where_a_float_is_expected_is_accepted(tmp_path: Path) -> None:
    # TOML writes 32 and 32.0 differently; a person writing whole gigabytes means the same.
    path = profile_variant(tmp_path, ("vram_total_gb = 32.0", "vram_total_gb = 32"))

    assert profile_read(path)[0].vram_total_gb == 32


def test_malformed_toml_is_refused_with_the_line(tmp_path: Path) -> None:
    path = profile_variant(tmp_path, ("max_batch = 4", "max_batch = = 4"))

    with pytest.raises(ProfileError, match=rf"^{path}: not valid TOML: .*line 14"):
        profile_read(path)


def test_a_key_written_twice_is_malformed_toml(tmp_path: Path) -> None:
    path = profile_variant(tmp_path, ("max_batch = 4", "max_batch = 4\nmax_batch = 64"))

    with pytest.raises(ProfileError, match=rf"^{path}: not valid TOML"):
        profile_read(path)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sim-32gb.toml"
    path.write_bytes(SIM.read_text().encode("utf-16"))

    with pytest.raises(ProfileError, match=rf"^{path}: is not UTF-8 text$"):
        profile_read(path)


def test_an_empty_file_is_refused_naming_every_missing_section(tmp_path: Path) -> None:
    path = tmp_path / "sim-32gb.toml"
    path.write_text("")

    with pytest.raises(ProfileError) as refused:
        profile_read(path)

    for key in ("name", "vram_total_gb", "limits", "models", "critic", "runtimes", "durations"):
        assert f"{path}: {key}: Field required" in str(refused.value)


def test_a_profile_named_differently_from_its_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rtx5090-32gb.toml"
    path.write_text(SIM.read_text())

    with pytest.raises(
        ProfileError, match=rf"^{path}: name: 'sim-32gb' must match the file name 'rtx5090-32gb'$"
    ):
        profile_read(path)


def test_a_missing_file_or_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot be read: No such file or directory"):
        profile_read(tmp_path / "absent.toml")
    with pytest.raises(ProfileError, match="cannot be read: Is a directory"):
        profile_read(tmp_path)


# --- loading: all or nothing ---------------------------------------------------------


@pytest.mark.django_db
def test_a_batch_with_one_bad_file_writes_nothing_and_leaves_existing_rows_alone(
    tmp_path: Path,
) -> None:
    profiles_load(SHIPPED)
    before, audits = rows(), AuditEvent.objects.count()
    changed = profile_variant(tmp_path, ('description = "Simulated', 'description = "Edited'))
    bad = profile_variant(
        tmp_path / "bad",
        ("max_batch = 4", "max_batch = 4.0"),
        source=ROOT / "profiles" / "rtx5090-32gb.toml",
    )

    with pytest.raises(ProfileError) as refused:
        profiles_load([changed, bad, SHIPPED[0]])

    message = str(refused.value)
    assert message.startswith("1 of 3 profile file(s) are invalid; nothing was loaded.")
    assert f"{bad}: limits.max_batch: Input should be a valid integer" in message
    assert rows() == before
    assert AuditEvent.objects.count() == audits


@pytest.mark.django_db
def test_every_bad_file_in_a_batch_is_reported_at_once(tmp_path: Path) -> None:
    first = profile_variant(tmp_path, ("max_width = 1536", "max_width = 1530"))
    second = tmp_path / "other.toml"
    second.write_bytes(b"\xff\xfe not utf-8")

    with pytest.raises(ProfileError) as refused:
        profiles_load([first, *SHIPPED[:2], second])

    message = str(refused.value)
    assert message.startswith("2 of 4 profile file(s) are invalid")
    assert f"{first}: limits.max_width" in message
    assert f"{second}: is not UTF-8 text" in message
    assert HardwareProfile.objects.count() == 0


@pytest.mark.django_db
def test_two_files_defining_the_same_profile_are_refused(tmp_path: Path) -> None:
    copy = profile_variant(tmp_path)

    with pytest.raises(ProfileError, match=rf"{copy}: name: profile 'sim-32gb' is also defined"):
        profiles_load([SIM, copy])

    assert HardwareProfile.objects.count() == 0


@pytest.mark.django_db
def test_the_same_file_given_twice_is_loaded_once() -> None:
    loaded = profiles_load([SIM, ROOT / "profiles" / ".." / "profiles" / "sim-32gb.toml"])

    assert [row.name for row in loaded] == ["sim-32gb"]


@pytest.mark.django_db
def test_an_empty_list_of_files_is_an_error_not_a_quiet_success() -> None:
    with pytest.raises(ProfileError, match="No profile files were given; nothing was loaded"):
        profiles_load([])


@pytest.mark.django_db
@pytest.mark.parametrize("paths", [str(SIM), SIM])
def test_a_single_path_instead_of_a_list_is_a_type_error(paths: object) -> None:
    with pytest.raises(TypeError, match="a sequence of paths, not a single path"):
        profiles_load(paths)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_reloading_unchanged_files_changes_nothing() -> None:
    profiles_load(SHIPPED)
    before = rows()

    profiles_load(SHIPPED)

    assert rows() == before
    latest = AuditEvent.objects.filter(action="profiles.load").first()
    assert latest is not None
    assert latest.summary.endswith("(0 created, 0 updated, 5 unchanged).")


@pytest.mark.django_db
def test_reloading_an_edited_file_updates_its_row_in_place(tmp_path: Path) -> None:
    profiles_load([SIM])
    row = HardwareProfile.objects.get(name="sim-32gb")
    edited = profile_variant(tmp_path, ("max_batch = 4", "max_batch = 2"))

    profiles_load([edited])

    updated = HardwareProfile.objects.get(name="sim-32gb")
    assert updated.pk == row.pk
    assert updated.data["limits"]["max_batch"] == 2
    assert updated.source_sha256 == hashlib.sha256(edited.read_bytes()).hexdigest()
    assert updated.source_path == str(edited)
    audit = AuditEvent.objects.filter(action="profiles.load").first()
    assert audit is not None
    assert audit.data["profiles"][0]["change"] == "updated"


# --- activation ----------------------------------------------------------------------


@pytest.mark.django_db
def test_activating_a_profile_creates_the_gpu_and_the_selector_sees_it() -> None:
    profiles_load(SHIPPED)

    gpu = gpu_activate("sim7", "sim-32gb")

    assert Gpu.objects.get(name="sim7").active_profile.name == "sim-32gb"
    assert gpu.queue == "gpu.sim7"
    row, profile = profile_active("sim7")
    assert (row.pk, profile.name) == (gpu.pk, "sim-32gb")
    audit = AuditEvent.objects.get(action="gpu.activate")
    assert audit.gpu == "sim7"
    assert audit.summary == "GPU sim7 created with profile sim-32gb (30.5 GB usable)."


@pytest.mark.django_db
def test_activating_another_profile_repoints_the_same_gpu() -> None:
    profiles_load(SHIPPED)
    first = gpu_activate("gpu0", "rtx5090-32gb")

    second = gpu_activate("gpu0", "rtx-pro-6000-96gb")

    assert second.pk == first.pk
    assert Gpu.objects.get(name="gpu0").active_profile.name == "rtx-pro-6000-96gb"
    assert Gpu.objects.count() == 1
    latest = AuditEvent.objects.filter(action="gpu.activate").first()
    assert latest is not None
    assert latest.data == {
        "profile": "rtx-pro-6000-96gb",
        "previous": "rtx5090-32gb",
        "sha256": HardwareProfile.objects.get(name="rtx-pro-6000-96gb").source_sha256,
    }


@pytest.mark.django_db
def test_activating_the_active_profile_again_leaves_the_gpu_row_alone() -> None:
    profiles_load(SHIPPED)
    gpu = gpu_activate("gpu0", "sim-32gb")

    again = gpu_activate("gpu0", "sim-32gb")

    assert again.updated_at == gpu.updated_at
    latest = AuditEvent.objects.filter(action="gpu.activate").first()
    assert latest is not None
    assert "already active" in latest.summary


@pytest.mark.django_db
def test_activating_an_unknown_profile_names_the_known_ones() -> None:
    profiles_load(SHIPPED)

    with pytest.raises(
        ProfileError,
        match=r"No hardware profile named 'rtx4090' is loaded \(known: rtx-pro-6000-96gb, "
        r"rtx5090-32gb, rtx5090-32gb-compose, rtx5090-32gb-compose-gpu1, sim-32gb\)\. "
        r"Next: load it",
    ):
        gpu_activate("gpu0", "rtx4090")

    assert not Gpu.objects.exists()


@pytest.mark.django_db
def test_activating_with_no_profiles_loaded_says_none_are_known() -> None:
    with pytest.raises(ProfileError, match=r"\(known: none\)"):
        gpu_activate("gpu0", "sim-32gb")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["", "GPU0", "gpu 0", "../gpu", "gpu.0", "g" * 65, "sim0'; DROP TABLE gpu_gpu;--", 7]
)
def test_a_malformed_gpu_name_is_refused(name: object) -> None:
    profiles_load([SIM])

    with pytest.raises(ProfileError, match="is not valid: use 1-64 lower-case letters"):
        gpu_activate(name, "sim-32gb")  # type: ignore[arg-type]

    assert not Gpu.objects.exists()


@pytest.mark.django_db
def test_a_stored_profile_edited_into_nonsense_is_not_activated() -> None:
    profiles_load(SHIPPED)
    gpu_activate("gpu0", "sim-32gb")
    with connection.cursor() as cursor:  # as an admin edit could leave it
        cursor.execute(
            "UPDATE gpu_hardwareprofile SET data = jsonb_set(data, '{reserve_gb}', '99') "
            "WHERE name = 'rtx5090-32gb'"
        )

    with pytest.raises(ProfileError, match=r"stored profile: \(top level\): .*reserve_gb \(99"):
        gpu_activate("gpu0", "rtx5090-32gb")

    assert Gpu.objects.get(name="gpu0").active_profile.name == "sim-32gb"
