"""A zoo of dynamic-width networks: one model, any compute ratio in (0, 1]."""

from zoo import (
    datasets,
    distribution,
    effort,
    layers,
    losses,
    profiles,
    recipes,
    schedules,
    serving,
)
from zoo.batchnorm import calibrate_batchnorm
from zoo.converted_model import ConvertedModel
from zoo.cost import cost, static_cost
from zoo.dynamic_conversion import dynamic
from zoo.dynamic_model import DynamicModel
from zoo.evaluation import evaluate_ratios
from zoo.latency_table import LatencyTable, latency_table
from zoo.litert_export import export_litert
from zoo.models import build, list_models
from zoo.presets import list_presets, load
from zoo.ratio_model import RatioModel
from zoo.subnet import extract_subnet
from zoo.training_plan import TrainingPlan
from zoo.width_groups import reorder_channels, width_groups

__all__ = [
    "ConvertedModel",
    "DynamicModel",
    "RatioModel",
    "TrainingPlan",
    "datasets",
    "distribution",
    "dynamic",
    "effort",
    "evaluate_ratios",
    "export_litert",
    "LatencyTable",
    "latency_table",
    "build",
    "calibrate_batchnorm",
    "cost",
    "extract_subnet",
    "layers",
    "losses",
    "list_models",
    "list_presets",
    "load",
    "profiles",
    "recipes",
    "reorder_channels",
    "schedules",
    "serving",
    "static_cost",
    "width_groups",
]
