"""The data a command names: a registered data set (the shared real sets under :func:`data_root`,
the SYNTHETIC DZ411 set), a long CSV file or a folder of CSVs; :func:`load` picks the reader."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .csv_reader import load_csv
from .errors import NeumatInputError
from .flow_curves import FlowCurves, exclude_curves
from .folder_reader import load_folder
from .synthetic import generate_dz411

# The shared real data sets: file, column mapping, how a curve is identified, replicates.
NAMED_DATASETS = {
    "gleeble_3cr2mo": dict(file="flow_curves.csv",
                           columns={"temperature": "temperature_C", "strain_rate": "strain_rate_per_s",
                                    "strain": "true_strain", "stress": "true_stress_MPa"},
                           allow_replicates=False,
                           attribution="P. Tize Mha et al., Metals 13 (2023) 633, doi:10.3390/met13030633; "
                                       "data CC BY-SA 4.0 (github.com/pantale/mdpi-metals-2023)"),
    "bst_freiberg": dict(file="flow_curves.csv",
                         columns={"curve": "file", "temperature": "temp", "strain_rate": "rate",
                                  "strain": "strain", "stress": "stress"},
                         allow_replicates=True,
                         attribution="Institute of Metal Forming, TU Bergakademie Freiberg, "
                                     "notebooks-flow-stress (bst.csv), MIT licence"),
    # 46 curves, 20-1100 °C across three regimes, sparse digitised points ending at different strains
    "ti64_babu2013": dict(file="flow_curves.csv",
                          columns={"curve": "curve", "temperature": "temperature_C",
                                   "strain_rate": "strain_rate_per_s", "strain": "true_strain",
                                   "stress": "true_stress_MPa"},
                          allow_replicates=False,
                          attribution="B. Babu, L.-E. Lindgren, Int. J. Plasticity 50 (2013) 94-108; digitised "
                                      "by LANL (github.com/lanl/impala), BSD 3-Clause licence"),
}


def data_root() -> Path:
    """Folder of the shared data sets: ``$NEUMAT_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("NEUMAT_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data",
                 Path.cwd() / "shared" / "data"):
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "data"


def dataset_available(name: str) -> bool:
    return name in NAMED_DATASETS and (data_root() / name / NAMED_DATASETS[name]["file"]).is_file()


# Names of the SYNTHETIC DZ411 set (``synthetic.generate_dz411``; ``data_seed`` picks its noise).
SYNTHETIC_NAMES = ("synthetic_dz411", "synthetic")
# Options that only apply to reading CSV files and folders, with their neutral values.
_FILE_OPTIONS = {"columns": ({}, None), "extras": ((), [], None), "temperature_unit": ("C", None),
                 "stress_unit": ("MPa",), "strain_rate_unit": ("1/s",)}


def load(spec: str, **kwargs) -> FlowCurves:
    """Load by name (shared data set or ``synthetic_dz411``), CSV file, or folder of CSVs.

    Keyword arguments go to :func:`load_csv` / :func:`load_folder`; ``data_seed`` selects the
    noise of the synthetic set; ``exclude_conditions`` (list of (T °C, rate 1/s[, extras])) drops
    whole curves, listed in ``FlowCurves.excluded``.
    """
    data_seed = kwargs.pop("data_seed", 0)
    exclude = kwargs.pop("exclude_conditions", ())
    if spec in NAMED_DATASETS or spec in SYNTHETIC_NAMES:
        for k, v in kwargs.items():
            if k in _FILE_OPTIONS and not any(v == d for d in _FILE_OPTIONS[k]):
                raise NeumatInputError(
                    f"'{spec}' is a named data set with fixed columns and units; the option "
                    f"{k.replace('_', '-')}={v!r} applies to CSV files and folders only")
        if spec in NAMED_DATASETS:
            return load_named(spec, exclude_conditions=exclude)
        return exclude_curves(generate_dz411(seed=data_seed), exclude)
    p = Path(spec)
    if p.is_dir():
        return load_folder(p, exclude_conditions=exclude, **kwargs)
    if p.is_file():
        return load_csv(p, exclude_conditions=exclude, **kwargs)
    raise NeumatInputError(
        f"data '{spec}' is neither a known data set ({', '.join([*NAMED_DATASETS, 'synthetic_dz411'])}) "
        f"nor an existing CSV file or folder")


def load_named(name: str, exclude_conditions: Sequence[Sequence[float]] = ()) -> FlowCurves:
    """A shared data set of ``NAMED_DATASETS`` from :func:`data_root` (source = its name)."""
    if name not in NAMED_DATASETS:
        raise NeumatInputError(f"unknown data set '{name}'; known: {', '.join(NAMED_DATASETS)}")
    info = NAMED_DATASETS[name]
    path = data_root() / name / info["file"]
    if not path.is_file():
        raise NeumatInputError(f"data set '{name}' not found at {path}; set NEUMAT_DATA to the folder "
                               f"holding {name}/")
    fc = load_csv(path, columns=info["columns"], allow_replicates=info["allow_replicates"],
                  exclude_conditions=exclude_conditions)
    fc.source = name
    return fc
