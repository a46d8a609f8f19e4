# Sourced by bench/up-down and bench/run-single: the reference tools, started for the bench and
# stopped after it, with nothing of theirs on the host's network or in system directories.
#
#   refs_start WORKDIR IMAGE_TAR   sets DOCKER_OK / PODMAN_OK (1 when usable) and REF (a prefix
#                                  that runs a command in their network namespace)
#   refs_stop                      stops dockerd, unmounts and removes their state
#
# dockerd (Debian's docker.io) and podman both run inside one private network namespace made
# for the bench: their bridges, veths and iptables chains live and die with it. dockerd's
# --data-root/--exec-root and podman's storage, tmp and network config are under WORKDIR.
# Set NO_REFS=1 to measure berth only.

refs_start() {
	local work=$1 tar=$2 i
	DOCKER_OK=0 PODMAN_OK=0 REF=
	REFS_WORK=$work/refs
	[ -n "${NO_REFS:-}" ] && return 0
	command -v dockerd >/dev/null || command -v podman >/dev/null || return 0
	REFS_NS=berth-bench-$$
	ip netns add "$REFS_NS" || return 0
	ip netns exec "$REFS_NS" ip link set lo up
	REF="nsenter --net=/run/netns/$REFS_NS"
	mkdir -p "$REFS_WORK"
	if command -v dockerd >/dev/null && command -v docker >/dev/null; then
		local d=$REFS_WORK/docker
		mkdir -p "$d"
		export DOCKER_HOST=unix://$d/docker.sock
		$REF dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
			-H "$DOCKER_HOST" --containerd-namespace berth-bench \
			--containerd-plugins-namespace berth-bench-plugins >"$d/dockerd.log" 2>&1 &
		REFS_DOCKERD=$!
		for i in $(seq 1 100); do
			docker info >/dev/null 2>&1 && break
			kill -0 "$REFS_DOCKERD" 2>/dev/null || break
			sleep 0.2
		done
		if docker info >/dev/null 2>&1 && docker load -i "$tar" >/dev/null 2>&1; then
			DOCKER_OK=1
		else
			echo "dockerd did not start (see below); docker rows skipped" >&2
			tail -5 "$d/dockerd.log" >&2
		fi
	fi
	if command -v podman >/dev/null; then
		local p=$REFS_WORK/podman
		mkdir -p "$p/netcfg"
		# nofile/nproc: podman's defaults are above this host's hard limits (runc then fails
		# with "error setting rlimit").
		cat >"$p/containers.conf" <<-CONF
			[containers]
			default_ulimits = ["nofile=1024:$(ulimit -Hn)", "nproc=4096:4096"]
			[network]
			network_config_dir = "$p/netcfg"
			[engine]
			tmp_dir = "$p/tmp"
			events_logger = "none"
			# runc, as docker's: podman prefers crun when it is installed, and crun refuses
			# this hybrid host's controller-less cgroup2 mount.
			runtime = "runc"
		CONF
		cat >"$p/storage.conf" <<-CONF
			[storage]
			driver = "overlay"
			graphroot = "$p/graph"
			runroot = "$p/run"
		CONF
		export CONTAINERS_CONF=$p/containers.conf CONTAINERS_STORAGE_CONF=$p/storage.conf
		if $REF podman load -i "$tar" >/dev/null 2>&1 && $REF podman run --rm busybox true >/dev/null 2>&1; then
			PODMAN_OK=1
		else
			echo "podman cannot run a container here; podman rows skipped" >&2
		fi
	fi
}

refs_stop() {
	[ -n "${REFS_NS:-}" ] || return 0
	if [ "${PODMAN_OK:-0}" = 1 ]; then
		$REF podman rm -af -t 0 >/dev/null 2>&1 || true
		$REF podman volume prune -f >/dev/null 2>&1 || true
	fi
	if [ -n "${REFS_DOCKERD:-}" ]; then
		docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
		kill "$REFS_DOCKERD" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$REFS_DOCKERD" 2>/dev/null || break; sleep 0.2; done
	fi
	# What they left mounted under our directory only (deepest first).
	if [ -d "$REFS_WORK" ]; then
		awk -v w="$REFS_WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
			while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	fi
	ip netns del "$REFS_NS" 2>/dev/null || true
	REFS_NS=
}

# Waits (up to 30 s) until the CPUs are at least 90 % idle over half a second, so that no tool
# is timed while another one's background work goes on (dockerd and containerd go on removing
# containers, layers and network state for seconds after `docker-compose down` returns).
settle() {
	local a b i j total idle
	for i in $(seq 1 60); do
		read -ra a </proc/stat
		sleep 0.5
		read -ra b </proc/stat
		total=0
		for j in 1 2 3 4 5 6 7 8; do total=$((total + b[j] - a[j])); done
		idle=$((b[4] - a[4] + b[5] - a[5]))
		if [ "$total" -gt 0 ] && [ $((idle * 100 / total)) -ge 90 ]; then return; fi
	done
}
