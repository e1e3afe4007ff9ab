# driftwatch's stdout callback for ansible-playbook. driftwatch embeds this
# file and writes it to a per-run temporary directory; it collects per-host
# stats and the results that matter for drift (changed, failed, unreachable)
# and prints them at the end as one JSON line tagged with MARKER. It uses only
# CallbackBase, so it works on ansible-core 2.14 through 2.19 without any
# collection. ansible censors no_log results before callbacks see them.
#
# The document is strict UTF-8 JSON (ASCII on the wire): ansible reads a
# host's undecodable bytes as lone surrogates (surrogateescape, \udcXX),
# which json.dumps would pass on as escapes no strict parser accepts, so
# every string is cleaned first and each undecodable byte becomes U+FFFD.
#
# Each play is listed with its host pattern, the hosts it matched (after
# --limit) and how many tasks started (after --tags/--skip-tags; implicit
# fact gathering, tagged always, does not count), so driftwatch can tell a
# run that checked nothing from one that found nothing to change.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
name: driftwatch_json
type: stdout
short_description: one JSON document for driftwatch
description:
  - Prints per-host stats and per-task results as one JSON document.
"""

import codecs
import json
import math

from ansible import __version__ as ANSIBLE_VERSION
from ansible.plugins.callback import CallbackBase

MARKER = "driftwatch-ansible/v1"
FACT_ACTIONS = ("gather_facts", "ansible.builtin.gather_facts", "setup", "ansible.builtin.setup")


def _bytes_back(error):
    # Encode error handler: a surrogateescape'd byte goes back to that byte,
    # any other lone surrogate to U+FFFD's bytes; decoding with "replace"
    # then shows each undecodable byte as one U+FFFD.
    out = bytearray()
    for char in error.object[error.start:error.end]:
        code = ord(char)
        out += bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else b"\xef\xbf\xbd"
    return bytes(out), error.end


codecs.register_error("driftwatch_bytes_back", _bytes_back)


def _text(value):
    """A str that is valid Unicode: lone surrogates become U+FFFD."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        value = str(value)
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "driftwatch_bytes_back").decode("utf-8", "replace")


def _clean(value):
    """The document with every string (keys included) made valid Unicode."""
    if isinstance(value, dict):
        return dict((_text(k), _clean(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _text(value)


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
        self.play = ""
        self.playbook = ""
        self.plays = []

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

    def v2_playbook_on_start(self, playbook):
        self.playbook = getattr(playbook, "_file_name", None) or ""

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name().strip()
        pattern = play.hosts if isinstance(play.hosts, list) else [play.hosts]
        # With serial, play start comes once per batch, each with a copy of
        # the play that keeps its _uuid: one entry per play.
        key = (self.playbook, getattr(play, "_uuid", None) or id(play))
        if not self.plays or self.plays[-1]["key"] != key:
            self.plays.append({"key": key, "playbook": self.playbook, "name": self.play,
                               "pattern": ",".join(str(p) for p in pattern), "hosts": [],
                               "tasks": 0})
        entry = self.plays[-1]
        try:
            # The inventory as this batch sees it: --limit and serial applied.
            inventory = play.get_variable_manager()._inventory
            matched = [host.get_name() for host in inventory.get_hosts(play.hosts)]
        except Exception as err:  # keep the run; matching then comes from results
            entry["error"] = "cannot list the play's hosts: %s" % err
            matched = []
        for name in matched:
            if name not in entry["hosts"]:
                entry["hosts"].append(name)

    def v2_playbook_on_task_start(self, task, is_conditional):
        # The fact gathering a play adds runs whatever the tags say; it checks nothing.
        implicit_facts = task.action in FACT_ACTIONS and task.get_name() == "Gathering Facts"
        if self.plays and not implicit_facts:
            self.plays[-1]["tasks"] += 1

    def v2_playbook_on_no_hosts_matched(self):
        if self.plays:
            self.plays[-1]["no_hosts_matched"] = True

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
        plays = [dict((k, v) for k, v in play.items() if k != "key") for play in self.plays]
        document = {
            "marker": MARKER,
            "ansible_version": ANSIBLE_VERSION,
            "hosts": hosts,
            "plays": plays,
            "results": self.results,
        }
        text = json.dumps(_clean(document), sort_keys=True, ensure_ascii=True, allow_nan=False)
        self._display.display(text, screen_only=True)
