/* PID 1 of the test kernel: a line shell on /dev/console, built against the kernel's own
 * tools/include/nolibc (no libc; see tools/build_linux.py).
 *
 * Commands: echo WORDS [> FILE], cat FILE, ls [DIR], poweroff, reboot. The prompt is "# ".
 * The kernel opens /dev/console as fds 0-2; its tty layer (canonical mode) echoes input and
 * hands over whole lines. */

#define LINUX_REBOOT_CMD_POWER_OFF 0x4321FEDC
#define LINUX_REBOOT_CMD_RESTART 0x01234567

static void put(int fd, const char *s)
{
	write(fd, s, strlen(s));
}

static void cmd_cat(const char *path)
{
	char buf[512];
	int fd = open(path, O_RDONLY, 0);
	long n;

	if (fd < 0) {
		put(1, "cat: cannot open ");
		put(1, path);
		put(1, "\n");
		return;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		write(1, buf, n);
	close(fd);
}

static void cmd_ls(const char *path)
{
	char buf[1024];
	int fd = open(path, O_RDONLY | O_DIRECTORY, 0);
	int n;

	if (fd < 0) {
		put(1, "ls: cannot open ");
		put(1, path);
		put(1, "\n");
		return;
	}
	while ((n = getdents64(fd, (void *)buf, sizeof(buf))) > 0) {
		int off = 0;

		while (off < n) {
			struct linux_dirent64 *d = (void *)(buf + off);

			if (d->d_name[0] != '.') {
				put(1, d->d_name);
				put(1, "\n");
			}
			off += d->d_reclen;
		}
	}
	close(fd);
}

static void cmd_echo(char *args)
{
	char *redir = strchr(args, '>');
	int fd = 1;

	if (redir) {
		char *path = redir + 1;

		*redir = 0;
		while (*path == ' ')
			path++;
		while (redir > args && redir[-1] == ' ')
			*--redir = 0;
		fd = open(path, O_WRONLY, 0);
		if (fd < 0) {
			put(1, "echo: cannot open ");
			put(1, path);
			put(1, "\n");
			return;
		}
	}
	put(fd, args);
	put(fd, "\n");
	if (fd != 1)
		close(fd);
}

static void run(char *line)
{
	char *args = line;

	while (*args && *args != ' ')
		args++;
	if (*args)
		*args++ = 0;
	while (*args == ' ')
		args++;
	if (!strcmp(line, "echo"))
		cmd_echo(args);
	else if (!strcmp(line, "cat"))
		cmd_cat(args);
	else if (!strcmp(line, "ls"))
		cmd_ls(*args ? args : "/");
	else if (!strcmp(line, "poweroff"))
		reboot(LINUX_REBOOT_CMD_POWER_OFF);
	else if (!strcmp(line, "reboot"))
		reboot(LINUX_REBOOT_CMD_RESTART);
	else if (*line) {
		put(1, line);
		put(1, ": unknown command\n");
	}
}

int main(void)
{
	char line[256];
	int len = 0;

	mount("proc", "/proc", "proc", 0, 0);
	mount("sysfs", "/sys", "sysfs", 0, 0);
	mount("devtmpfs", "/dev", "devtmpfs", 0, 0);   /* /dev/vport0pN for virtio ports */
	put(1, "e2kchar init: shell ready\n# ");
	for (;;) {
		char c;

		if (read(0, &c, 1) != 1)
			continue;
		if (c == '\r' || c == '\n') {
			line[len] = 0;
			run(line);
			len = 0;
			put(1, "# ");
		} else if (len < (int)sizeof(line) - 1) {
			line[len++] = c;
		}
	}
}
