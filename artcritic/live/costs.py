"""The Costs panel of a project and the GPU page's measurements, as view models.

Reads through ``artcritic.jobs.accounting`` and ``artcritic.jobs.waits``; the templates
only format. A GPU whose profile has no economics says so rather than show a price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import ProfileError, profile_from_data
from artcritic.jobs.accounting import (
    DutyCycle,
    EtaAccuracy,
    ProjectCosts,
    duty_cycles,
    eta_accuracy,
    last_day,
    month_start,
    project_costs,
)
from artcritic.jobs.waits import TailLatency, tail_latency
from artcritic.studio.models import Project


@dataclass(frozen=True)
class GpuDuty:
    """One GPU on the Costs panel: how busy it was this month, and whether it is priced."""

    name: str
    month: DutyCycle
    simulated: bool
    profile_name: str
    priced: bool


@dataclass(frozen=True)
class CostsPanel:
    project: Project
    costs: ProjectCosts
    gpus: list[GpuDuty] = field(default_factory=list)

    @property
    def unpriced_profiles(self) -> list[str]:
        return sorted({gpu.profile_name for gpu in self.gpus if not gpu.priced})

    @property
    def simulated(self) -> bool:
        return any(gpu.simulated for gpu in self.gpus)


def _gpu_rows() -> dict[str, tuple[bool, str, bool]]:
    """(simulated, profile name, priced) of every GPU."""
    rows = {}
    for gpu in Gpu.objects.select_related("active_profile").order_by("name"):
        try:
            profile = profile_from_data(gpu.active_profile.data)
        except ProfileError:
            rows[gpu.name] = (gpu.active_profile.simulated, gpu.active_profile.name, False)
            continue
        rows[gpu.name] = (profile.simulated, profile.name, profile.economics is not None)
    return rows


def costs_panel(project: Project, *, now: datetime | None = None) -> CostsPanel:
    """This month's costs of ``project`` and every GPU's duty cycle (four queries)."""
    now = now or timezone.now()
    since = month_start(now)
    rows = _gpu_rows()
    names = list(rows)
    duty = duty_cycles(names, since=since, now=now)
    return CostsPanel(
        project=project,
        costs=project_costs(project, now=now),
        gpus=[
            GpuDuty(
                name=name,
                month=duty[name],
                simulated=rows[name][0],
                profile_name=rows[name][1],
                priced=rows[name][2],
            )
            for name in names
        ],
    )


@dataclass(frozen=True)
class GpuMeasures:
    """The GPU page's measurements: ETA accuracy, duty cycle, tail latency and convoys."""

    name: str
    accuracy: EtaAccuracy
    day: DutyCycle
    month: DutyCycle
    tails: list[TailLatency]


def gpu_measures(name: str, *, now: datetime | None = None) -> GpuMeasures:
    """Everything the GPU page measures for ``name`` (seven queries)."""
    now = now or timezone.now()
    return GpuMeasures(
        name=name,
        accuracy=eta_accuracy([name])[name],
        day=duty_cycles([name], since=last_day(now), now=now)[name],
        month=duty_cycles([name], since=month_start(now), now=now)[name],
        tails=tail_latency(name, now=now),
    )
