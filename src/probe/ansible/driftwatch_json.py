# driftwatch's stdout callback for ansible-playbook. driftwatch embeds this
# file and writes it to a per-run temporary directory; it collects per-host
# stats and the results that matter for drift (changed, failed, unreachable)
# and prints them at the end as one JSON line tagged with MARKER. It uses only
# CallbackBase, so it works on ansible-core 2.14 through 2.19 without any
# collection. ansible censors no_log results before callbacks see them.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
name: driftwatch_json
type: stdout
short_description: one JSON document for driftwatch
description:
  - Prints per-host stats and per-task results as one JSON document.
"""

import json

from ansible import __version__ as ANSIBLE_VERSION
from ansible.plugins.callback import CallbackBase

MARKER = "driftwatch-ansible/v1"


def _part(result, name):
    # ansible-core 2.19 made host/task/result public; older releases only
    # have the underscored attributes.
    value = getattr(result, name, None)
    if value is None:
        value = getattr(result, "_" + name)
    return value


def _is_temp(header):
    return "ansible-local-" in header or "/.ansible/tmp/" in header


def _without_temp_headers(diff, target):
    # template and copy name their rendered side after a random temporary
    # file; name it after the managed path instead, so diffs stay stable.
    cleaned = []
    for part in diff if isinstance(diff, list) else [diff]:
        if not isinstance(part, dict):
            continue
        part = dict(part)
        for key in ("before_header", "after_header"):
            if _is_temp(str(part.get(key, ""))):
                if target and not _is_temp(str(target)):
                    part[key] = str(target)
                else:
                    del part[key]
        cleaned.append(part)
    return cleaned


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "driftwatch_json"

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.results = []
        self.notes = []
        self.play = ""

    def _record(self, result, status, ignored=False):
        host = _part(result, "host")
        task = _part(result, "task")
        data = _part(result, "result")
        entry = {
            "host": host.get_name(),
            "task": task.get_name(),
            "action": task.action,
            "path": task.get_path() or "",
            "play": self.play,
            "status": status,
            "changed": bool(data.get("changed", False)),
            "handler": type(task).__name__ == "Handler",
        }
        if ignored:
            entry["ignored"] = True
        if "censored" in data:
            entry["censored"] = True
        if status != "ok" and "msg" in data:
            entry["msg"] = str(data.get("msg"))
        target = data.get("dest") or data.get("path") or ""
        diffs = []
        if entry["changed"] or status != "ok":
            if data.get("diff"):
                diffs.append(("", data["diff"]))
            for item in data.get("results") or []:
                if isinstance(item, dict) and item.get("diff") and item.get("changed"):
                    try:
                        label = self._get_item_label(item)
                    except Exception:
                        label = item.get("item", "")
                    diffs.append((str(label), item["diff"]))
        if diffs:
            entry["diff"] = "".join(
                ("item: %s\n" % label if label else "") + self._diff_text(diff, target) for label, diff in diffs
            )
        self.results.append(entry)

    def _diff_text(self, diff, target):
        try:
            return self._get_diff(_without_temp_headers(diff, target))
        except Exception as err:  # a module returning an odd diff must not lose the run
            return "(diff could not be rendered: %s)\n" % err

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name().strip()

    def v2_playbook_on_no_hosts_matched(self):
        self.notes.append("play %r matched no hosts" % self.play)

    def v2_runner_on_ok(self, result):
        data = _part(result, "result")
        if data.get("changed", False):
            self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed", ignored=ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for name in sorted(stats.processed.keys()):
            hosts[name] = stats.summarize(name)
        document = {
            "marker": MARKER,
            "ansible_version": ANSIBLE_VERSION,
            "hosts": hosts,
            "results": self.results,
            "notes": self.notes,
        }
        self._display.display(json.dumps(document, default=str, sort_keys=True), screen_only=True)
