"""The isolated network of a chaos run: one network namespace per node, joined by veth
pairs to a bridge in the root namespace, where the clients run.

Partitions drop packets silently where they arrive: each namespace's policy rules get a
`blackhole` rule per peer it must not hear from (the local-table rule is moved behind
them, so the drop happens before delivery). Traffic to and from the clients (the
bridge's address) is never touched, so a node cut off from its peers still talks to
clients, which is the nastiest partition for a leader.

Everything made here is named after the run's tag and removed by `teardown`, also after
a failed setup.
"""

import subprocess


def sh(*args, check=True):
    """Runs a command; its output is returned, a failure raised with what it said."""
    done = subprocess.run(args, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class Network:
    def __init__(self, tag, nodes, subnet):
        # Interface names are limited to 15 characters.
        self.tag = tag
        self.bridge = f"fjb{tag}"
        self.subnet = subnet  # e.g. "10.77.3"
        self.gateway = f"{subnet}.1"
        self.nodes = list(nodes)
        self.cut = set()  # (receiver, sender) pairs whose packets are dropped
        self.made = []

    def ns(self, node):
        return f"fjord-chaos-{self.tag}-{node}"

    def ip(self, node):
        return f"{self.subnet}.{10 + node}"

    def setup(self):
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            self.made.append(("link", self.bridge))
            sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for n in self.nodes:
                ns, veth = self.ns(n), f"fjv{self.tag}{n}"
                sh("ip", "netns", "add", ns)
                self.made.append(("netns", ns))
                sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                self.made.append(("link", veth))
                sh("ip", "link", "set", veth, "master", self.bridge, "up")
                sh("ip", "-n", ns, "addr", "add", f"{self.ip(n)}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", ns, "route", "add", "default", "via", self.gateway)
                # Local delivery after the partition rules, so that they see packets first.
                sh("ip", "-n", ns, "rule", "add", "pref", "100", "lookup", "local")
                sh("ip", "-n", ns, "rule", "del", "pref", "0")
        except Exception:
            self.teardown()
            raise

    def teardown(self):
        for kind, name in reversed(self.made):
            if kind == "netns":
                sh("ip", "netns", "del", name, check=False)
            else:
                sh("ip", "link", "del", name, check=False)
        self.made = []
        self.cut = set()

    def drop(self, receiver, sender):
        """`receiver` stops hearing `sender`."""
        if (receiver, sender) in self.cut:
            return
        sh("ip", "-n", self.ns(receiver), "rule", "add", "pref", "10", "from",
           self.ip(sender), "iif", "eth0", "blackhole")
        self.cut.add((receiver, sender))

    def undrop(self, receiver, sender):
        if (receiver, sender) not in self.cut:
            return
        sh("ip", "-n", self.ns(receiver), "rule", "del", "pref", "10", "from",
           self.ip(sender), "iif", "eth0", "blackhole", check=False)
        self.cut.discard((receiver, sender))

    def split(self, side_a, side_b):
        """No packet passes between the two sides, either way."""
        for a in side_a:
            for b in side_b:
                self.drop(a, b)
                self.drop(b, a)

    def heal(self):
        for receiver, sender in list(self.cut):
            self.undrop(receiver, sender)
