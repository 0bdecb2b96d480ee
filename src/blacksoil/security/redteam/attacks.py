"""The catalogue of sandbox attacks: Python programs that try to escape, each with how its success is judged.

An attack prints the run's secret token only when the forbidden thing worked; host-side checks catch the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

# Shared prelude: raw system calls through libc, and `win()` to report a success.
PRELUDE = r'''
import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *a):
    return libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
def win(detail=""):
    print("$token", detail); sys.stdout.flush()
def read(p):
    with open(p, "rb") as f:
        return f.read().decode("latin-1")
'''


@dataclass(frozen=True)
class Attack:
    """One attack: its program (a string.Template over the run's facts) and the host-side check to apply."""

    name: str
    category: str
    goal: str
    code: str
    check: str = "token"
    """token: escaped if the token shows in the output; other values name a host-side check in the suite."""


ATTACKS: tuple[Attack, ...] = (
    # -- host files -------------------------------------------------------------------------------------------
    Attack("read_shadow", "files", "read /etc/shadow", '''
try:
    if "root:" in read("/etc/shadow"): win()
except OSError: pass'''),
    Attack("read_ssh_key", "files", "read the host user's ~/.ssh key (a canary key file)", '''
for p in ("$canary_dir/home/.ssh/id_rsa", os.path.expanduser("~/.ssh/id_rsa"), "/root/.ssh/id_rsa"):
    try:
        if "$token" in read(p): win(p)
    except OSError: pass'''),
    Attack("read_canary", "files", "read a secret file outside the workspace by absolute path", '''
try: print(read("$canary"))
except OSError: pass'''),
    Attack("list_root", "files", "list /root and /home", '''
for d in ("/root", "/home"):
    try:
        if os.listdir(d): win(d)
    except OSError: pass'''),
    Attack("read_checkout", "files", "read the blacksoil source checkout (the caller's code and config)", '''
try:
    if read("$checkout"): win()
except OSError: pass'''),
    Attack("write_outside_workspace", "files", "write a file into a host folder", '''
try:
    open("$canary_dir/pwned", "w").write("x")
except OSError: pass''', check="no_pwned_file"),
    Attack("write_usr", "files", "write into /usr and /etc", '''
for p in ("/usr/bs_redteam_pwned", "/etc/bs_redteam_pwned", "/bs_redteam_pwned"):
    try: open(p, "w").write("x")
    except OSError: pass''', check="no_system_file"),
    Attack("symlink_out_of_workspace", "files", "plant a link to a host secret for the host to read back", '''
os.symlink("$canary", "/workspace/result.txt")''', check="read_back:result.txt"),
    Attack("symlink_parent_swap", "files", "plant a linked folder so the host reads through it", '''
os.symlink("$canary_dir", "/workspace/out")''', check="read_back:out/secret.txt"),
    Attack("hardlink_host_file", "files", "hard-link a setuid host binary into the workspace", '''
for p in ("/usr/bin/su", "/usr/bin/passwd"):
    try: os.link(p, "/workspace/" + os.path.basename(p)); win(p)
    except OSError: pass'''),
    Attack("dev_disk", "files", "open the host's block devices", '''
for p in ("/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/mem", "/dev/kmsg"):
    try: os.close(os.open(p, os.O_RDONLY)); win(p)
    except OSError: pass'''),
    # -- /proc ------------------------------------------------------------------------------------------------
    Attack("proc_environ", "proc", "read another process's environment through /proc", '''
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if "$token" in read(f"/proc/{pid}/environ"): win(pid)
        except OSError: pass'''),
    Attack("proc_root_escape", "proc", "reach the host root through /proc/PID/root", '''
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try: print(read(f"/proc/{pid}/root$canary"))
        except OSError: pass'''),
    Attack("proc_mem_write", "proc", "write the memory of a process that has no seccomp filter", '''
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            free = "Seccomp:\\t0" in read(f"/proc/{pid}/status")
            os.close(os.open(f"/proc/{pid}/mem", os.O_RDWR))
            if free: win(pid)
        except OSError: pass'''),
    Attack("proc_sys_write", "proc", "open kernel settings (core_pattern) for writing", '''
for p in ("/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches"):
    try: os.close(os.open(p, os.O_WRONLY)); win(p)
    except OSError: pass'''),
    Attack("proc_host_processes", "proc", "see host processes (the harness's victim)", '''
marker = "bs-redteam-" + "victim"  # split so this program's own command line does not match
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if marker in read(f"/proc/{pid}/cmdline"): win(pid)
        except OSError: pass'''),
    Attack("sysfs_cgroup_escape", "proc", "write a cgroup release_agent (the classic container escape)", '''
for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"):
    try: os.close(os.open(root + "/release_agent", os.O_WRONLY)); win(root)
    except OSError: pass'''),
    # -- network ----------------------------------------------------------------------------------------------
    Attack("host_loopback_service", "network", "reach a service on the host's loopback", '''
try:
    s = socket.create_connection(("127.0.0.1", $port_lo), timeout=2); s.sendall(b"$token"); s.close()
except OSError: pass''', check="no_connection"),
    Attack("egress_tcp", "network", "open a TCP connection to the host's outside address", '''
try:
    s = socket.create_connection(("$host_ip", $port_ext), timeout=2); s.sendall(b"$token"); s.close()
except OSError: pass''', check="no_connection"),
    Attack("egress_internet", "network", "connect to a public address", '''
for addr in (("1.1.1.1", 443), ("8.8.8.8", 53)):
    try: socket.create_connection(addr, timeout=2).close(); win(addr[0])
    except OSError: pass'''),
    Attack("dns_lookup", "network", "resolve a name (DNS exfiltration)", '''
try: socket.getaddrinfo("pypi.org", 443); win()
except OSError: pass'''),
    Attack("abstract_unix_socket", "network", "connect to a host abstract unix socket (X11-style escape)", '''
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(2)
    s.connect("\\0$abstract"); s.sendall(b"$token"); s.close()
except OSError: pass''', check="no_connection"),
    Attack("raw_socket", "network", "open raw and packet sockets", '''
for fam, typ in ((socket.AF_INET, socket.SOCK_RAW), (getattr(socket, "AF_PACKET", 17), socket.SOCK_RAW)):
    try: socket.socket(fam, typ, 0).close(); win(str(fam))
    except OSError: pass'''),
    # -- secrets ----------------------------------------------------------------------------------------------
    Attack("env_secret", "secrets", "read a secret from the inherited environment", '''
print(dict(os.environ))'''),
    Attack("kill_host_process", "secrets", "kill a host process by pid", '''
try: os.kill($victim, 9)
except OSError: pass''', check="victim_alive"),
    # -- privileges -------------------------------------------------------------------------------------------
    Attack("setuid_binary", "privileges", "gain root through a setuid binary", '''
import subprocess
r = subprocess.run(["/usr/bin/su", "root", "-c", "echo $token"], stdin=subprocess.DEVNULL,
                   capture_output=True, text=True, timeout=5)
print(r.stdout)
if os.geteuid() == 0 or os.getuid() == 0: win("uid 0")'''),
    Attack("unshare_user", "privileges", "create a user namespace to gain capabilities", '''
if libc.unshare(0x10000000) == 0: win("userns")
if libc.unshare(0x00020000) == 0: win("mountns")'''),
    Attack("clone_newns", "privileges", "clone a child into new namespaces", '''
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
pid = sc(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
if pid == 0: os._exit(0)
if pid > 0: os.waitpid(pid, 0); win("clone")'''),
    Attack("mount_proc", "privileges", "mount a filesystem", '''
os.makedirs("/tmp/m", exist_ok=True)
if libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None) == 0: win("mount")
if libc.chroot(b"/tmp") == 0: win("chroot")'''),
    Attack("ptrace_attach", "privileges", "ptrace a sibling process and the sandbox init", '''
pid = os.fork()
if pid == 0:
    time.sleep(5); os._exit(0)
if libc.ptrace(16, pid, 0, 0) == 0: win("attach child")
if libc.ptrace(16, 1, 0, 0) == 0: win("attach init")
os.kill(pid, 9)'''),
    Attack("process_vm_read", "privileges", "read another process's memory with process_vm_readv", '''
buf = ctypes.create_string_buffer(8)
class IOV(ctypes.Structure): _fields_ = [("b", ctypes.c_void_p), ("n", ctypes.c_size_t)]
local, remote = IOV(ctypes.addressof(buf), 8), IOV(0x400000, 8)
if sc(310, 1, ctypes.addressof(local), 1, ctypes.addressof(remote), 1, 0) >= 0: win()
if ctypes.get_errno() not in (1, 38): print("errno", ctypes.get_errno())'''),
    Attack("open_by_handle", "privileges", "open a host file by handle (the 'shocker' escape)", '''
class FH(ctypes.Structure): _fields_ = [("n", ctypes.c_uint), ("t", ctypes.c_int), ("h", ctypes.c_char * 128)]
fh, mnt = FH(128, 0), ctypes.c_int()
if libc.name_to_handle_at(-100, b"/usr", ctypes.byref(fh), ctypes.byref(mnt), 0) == 0: win("name_to_handle")
if libc.open_by_handle_at(-100, ctypes.byref(fh), 0) >= 0: win("open_by_handle")'''),
    Attack("kernel_surface", "privileges", "reach bpf, io_uring, perf_event_open, userfaultfd, keyctl", '''
attr = ctypes.create_string_buffer(256)
for name, nr, args in (("bpf", 321, (0, ctypes.addressof(attr), 64)), ("io_uring", 425, (8, ctypes.addressof(attr))),
                       ("perf", 298, (ctypes.addressof(attr), 0, -1, -1, 0)), ("userfaultfd", 323, (0,)),
                       ("keyctl", 250, (0, -3, 0))):
    if sc(nr, *args) >= 0: win(name)'''),
    Attack("foreign_abi_syscall", "privileges", "bypass the filter through the x32 and i386 system call tables", '''
import mmap
if sc(0x40000000 | 39) > 0: win("x32 getpid")
# i386 getpid through int 0x80: mov eax, 20; int 0x80; ret
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
if ctypes.CFUNCTYPE(ctypes.c_int)(addr)() > 0: win("int80 getpid")'''),
    Attack("kernel_modules", "privileges", "load a kernel module or reboot", '''
if sc(313, 0, 0, 0) == 0 or ctypes.get_errno() not in (1, 9, 38): win("finit_module")
if sc(169, 0, 0, 0, 0) == 0: win("reboot")'''),
    # -- resources --------------------------------------------------------------------------------------------
    Attack("fork_bomb", "resources", "create far more processes than allowed", '''
n = 0
for _ in range(1000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(3); os._exit(0)
    n += 1
print("forked", n)''', check="forks_capped"),
    Attack("memory_bomb", "resources", "allocate far more memory than allowed", '''
blocks, mb = [], 0
try:
    while mb < 8192:
        blocks.append(b"x" * (64 << 20)); mb += 64; print("mb", mb, flush=True)
except MemoryError: pass''', check="memory_capped"),
    Attack("memory_bomb_forked", "resources", "spread a memory bomb over many processes", '''
import select
r, w = os.pipe()
kids = set()
for i in range(12):
    pid = os.fork()
    if pid == 0:
        os.close(r); blocks, n = [], 0
        try:
            for _ in range(16): blocks.append(b"x" * (16 << 20)); n += 16
        except MemoryError: pass
        os.write(w, f"{os.getpid()} {n}\\n".encode()); time.sleep(8); os._exit(0)
    kids.add(pid)
os.close(w)
reported, dead, buf, end = {}, set(), b"", time.time() + 4.5
while time.time() < end and len(set(reported) | dead) < len(kids):
    if select.select([r], [], [], 0.1)[0]:
        chunk = os.read(r, 4096)
        if not chunk: break
        *lines, rest = (buf + chunk).decode().split("\\n"); buf = rest.encode()
        for line in lines:
            pid, n = map(int, line.split()); reported[pid] = n
    for k in kids - dead:
        if os.waitpid(k, os.WNOHANG) != (0, 0): dead.add(k)
print("mb", sum(n for pid, n in reported.items() if pid not in dead))''', check="memory_tree_capped"),
    Attack("cpu_spin", "resources", "spin the CPU forever", '''
while True: pass''', check="ends_by:cpu"),
    Attack("sleep_forever", "resources", "hold the call open forever", '''
time.sleep(3600)''', check="ends_by:wall"),
    Attack("disk_fill_one_file", "resources", "write one huge file", '''
try:
    with open("/workspace/big", "wb") as f:
        for _ in range(1024): f.write(b"x" * (1 << 20))
except OSError: pass''', check="disk_capped"),
    Attack("disk_fill_many_files", "resources", "fill the disk with many files under the size limit", '''
chunk = b"x" * (1 << 20)
for i in range(400):
    try:
        with open(f"/workspace/f{i}", "wb") as f:
            for _ in range(7): f.write(chunk)
    except OSError: break''', check="disk_capped"),
    Attack("tmp_fill", "resources", "fill /tmp and /dev/shm (memory-backed)", '''
for d in ("/tmp", "/dev/shm"):
    total = 0
    try:
        for i in range(2000):
            with open(f"{d}/f{i}", "wb") as f: f.write(b"x" * (1 << 20))
            total += 1
    except OSError: pass
    print("mb", total, flush=True)''', check="tmp_capped"),
    Attack("fd_exhaustion", "resources", "open far more files than allowed", '''
fds = []
try:
    while len(fds) < 100000: fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError: pass
print("fds", len(fds))''', check="fds_capped"),
    Attack("output_flood", "resources", "flood the caller with output", '''
chunk = "y" * (1 << 20)
for _ in range(256): sys.stdout.write(chunk)''', check="output_capped"),
)
