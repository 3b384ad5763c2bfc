# The same environment as scripts/setup.sh (Debian 12, Python 3.11, iverilog, yosys, nextpnr-ice40, g++, the pinned Python packages
# of requirements.lock), with edgelearn installed as a user gets it: a regular, non-editable install of the package.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends iverilog yosys nextpnr-ice40 fpga-icestorm g++ make ccache \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/edgelearn
COPY requirements.lock pyproject.toml README.md ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -q "torch==2.13.0" \
 && /opt/venv/bin/pip install -q -r requirements.lock
COPY edgelearn ./edgelearn
RUN /opt/venv/bin/pip install -q --no-deps . && rm -rf /opt/edgelearn/build
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /work
ENTRYPOINT ["edgelearn"]
CMD ["--help"]
