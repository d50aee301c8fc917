#!/usr/bin/env python3
"""The official Kubernetes Python client, unmodified, against skiff server.

Usage: client_smoke.py KUBECONFIG [smoke|kindless]

smoke (default): CRUD on a Namespace and a ConfigMap, lists with a label selector, and a
watch that sees ADDED, MODIFIED and DELETED for changes this script makes.
kindless: objects built the way the client's own examples build them, without kind and
apiVersion (upstream takes both from the endpoint), are created.

Exits non-zero (with the reason on stderr) on the first thing that is not as upstream.
"""

import sys
import threading

try:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
except ImportError as e:  # the Rust test turns this into its own failure message
    print(f"import kubernetes failed ({e}): pip install kubernetes", file=sys.stderr)
    sys.exit(3)

NS = "py-smoke"
WATCH_TIMEOUT = 20


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_api_error(status, reason, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        check(e.status == status, f"{fn.__name__}: status {e.status}, want {status}: {e.body}")
        check(reason in (e.body or ""), f"{fn.__name__}: reason {reason} not in {e.body}")
        return
    raise AssertionError(f"{fn.__name__}: expected {status} {reason}, it succeeded")


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()

    # Namespace: create, read, list, label (patch).
    ns = core.create_namespace(
        client.V1Namespace(api_version="v1", kind="Namespace", metadata=client.V1ObjectMeta(name=NS))
    )
    check(ns.metadata.name == NS and ns.metadata.uid, f"created namespace: {ns.metadata}")
    check(core.read_namespace(NS).status.phase == "Active", "namespace is Active")
    names = [n.metadata.name for n in core.list_namespace().items]
    for want in ("default", "kube-system", NS):
        check(want in names, f"{want} in namespace list {names}")
    core.patch_namespace(NS, {"metadata": {"labels": {"smoke": "yes"}}})
    labelled = [n.metadata.name for n in core.list_namespace(label_selector="smoke=yes").items]
    check(labelled == [NS], f"label selector on namespaces: {labelled}")

    # ConfigMap: create, read, list, replace, patch, delete.
    cm = client.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=client.V1ObjectMeta(name="cfg", labels={"app": "smoke"}), data={"k": "v"}
    )
    created = core.create_namespaced_config_map(NS, cm)
    check(created.metadata.resource_version, "resourceVersion set")
    expect_api_error(409, "AlreadyExists", core.create_namespaced_config_map, NS, cm)
    got = core.read_namespaced_config_map("cfg", NS)
    check(got.data == {"k": "v"}, f"read data {got.data}")
    listed = core.list_namespaced_config_map(NS, label_selector="app=smoke")
    check([c.metadata.name for c in listed.items] == ["cfg"], f"list {listed.items}")
    check(listed.metadata.resource_version, "list has a resourceVersion")
    got.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("cfg", NS, got)
    check(replaced.data == {"k": "w"}, f"replaced data {replaced.data}")
    stale = created
    stale.data = {"k": "stale"}
    expect_api_error(409, "Conflict", core.replace_namespaced_config_map, "cfg", NS, stale)
    patched = core.patch_namespaced_config_map("cfg", NS, {"data": {"extra": "1"}})
    check(patched.data == {"k": "w", "extra": "1"}, f"patched data {patched.data}")
    core.delete_namespaced_config_map("cfg", NS)
    expect_api_error(404, "NotFound", core.read_namespaced_config_map, "cfg", NS)

    # Watch from the list's resourceVersion, then change an object: the watch must see
    # ADDED, MODIFIED, DELETED for it, in order.
    start_rv = core.list_namespaced_config_map(NS).metadata.resource_version
    seen = []
    failure = []
    done = threading.Event()
    w = watch.Watch()

    def run_watch():
        try:
            for event in w.stream(
                core.list_namespaced_config_map,
                NS,
                resource_version=start_rv,
                timeout_seconds=WATCH_TIMEOUT,
            ):
                obj = event["object"]
                if obj.metadata.name == "watched":
                    seen.append((event["type"], obj.data))
                    if event["type"] == "DELETED":
                        w.stop()
        except Exception as e:  # reported by the main thread
            failure.append(repr(e))
        finally:
            done.set()

    watcher = threading.Thread(target=run_watch, daemon=True)
    watcher.start()
    core.create_namespaced_config_map(
        NS,
        client.V1ConfigMap(
            api_version="v1",
            kind="ConfigMap",
            metadata=client.V1ObjectMeta(name="watched"),
            data={"v": "1"},
        ),
    )
    core.patch_namespaced_config_map("watched", NS, {"data": {"v": "2"}})
    core.delete_namespaced_config_map("watched", NS)
    check(done.wait(WATCH_TIMEOUT + 10), "the watch ended")
    check(not failure, f"the watch failed: {failure}")
    types = [t for t, _ in seen]
    check(types == ["ADDED", "MODIFIED", "DELETED"], f"watch events {seen}")
    check(seen[1][1] == {"v": "2"}, f"MODIFIED carries the new object: {seen}")

    # Delete the namespace: accepted; it is Terminating or gone afterwards.
    core.delete_namespace(NS)
    try:
        phase = core.read_namespace(NS).status.phase
        check(phase == "Terminating", f"namespace after delete: {phase}")
    except ApiException as e:
        check(e.status == 404, f"read namespace after delete: {e.status} {e.body}")

    print("python client smoke: ok")


def kindless(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    ns = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="kindless")))
    check(ns.metadata.name == "kindless", f"created namespace: {ns.metadata}")
    cm = core.create_namespaced_config_map(
        "kindless",
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"k": "v"}),
    )
    check(cm.kind == "ConfigMap" and cm.api_version == "v1", f"stored as {cm.kind} {cm.api_version}")
    check(core.read_namespaced_config_map("cfg", "kindless").data == {"k": "v"}, "read back")
    print("python client kindless: ok")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mode = sys.argv[2] if len(sys.argv) == 3 else "smoke"
    {"smoke": main, "kindless": kindless}[mode](sys.argv[1])
