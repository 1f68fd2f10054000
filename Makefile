# The two commands of the README:  make demo  |  make test
# Both create or reuse .venv, install torch==2.13.0 first (the CPU wheel on disk), then the
# package with its extras, and the Debian packages the project needs. A second run installs nothing.
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.neumat-installed
# the last five: the shared libraries the gmsh wheel links (neumat casting; no display is needed)
APT_PKGS := gfortran libarpack2-dev libspooles-dev liblapack-dev dpkg-dev libglu1-mesa libgl1 libxcursor1 libxft2 libxinerama1
DEMO_OUT ?= runs/demo

.PHONY: setup system-deps ccx dolfinx-env demo test bench accuracy clean

setup: system-deps $(STAMP)

system-deps:
	@bash .ci/system-deps.sh $(APT_PKGS)

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,fem,test,dask,casting]'
	touch $(STAMP)

# CalculiX 2.20 with run-time UMAT loading, built once per machine into ~/.cache/neumat.
ccx: system-deps
	@bash fortran_umat/build_ccx.sh

demo: setup ccx
	$(VENV)/bin/neumat demo --out $(DEMO_OUT)

# DOLFINx 0.11 (Python 3.12, MPICH) in .venv-dolfinx for fem_bridge.hosts.dolfinx_compression; idempotent.
dolfinx-env:
	@bash .ci/setup-dolfinx.sh

test: setup ccx dolfinx-env
	$(PY) -m pytest -n 2 -q

bench: setup
	$(VENV)/bin/neumat bench

accuracy: setup
	$(VENV)/bin/neumat benchmark accuracy

clean:
	rm -rf runs .pytest_cache build
