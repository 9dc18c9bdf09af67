#!/usr/bin/env bash
# Installs tmux, which tests/cli/test_dashboard.py drives the live dashboard in (send-keys,
# capture-pane). Run by `make test` (target terminal-tools); see tests/apt-tool.sh.
exec bash "$(dirname "$0")/../apt-tool.sh" terminal-tools tmux tmux "the dashboard's terminal test"
