/*
 * proc.c - run a command (shell string or argv) with a timeout, capturing
 * the beginning of its output for status details and logs.
 *
 * The child runs in its own process group with stdin on /dev/null and
 * stdout+stderr on a pipe; on timeout the whole group gets SIGKILL, so a
 * hung health check or update module cannot hang the agent. Output beyond
 * the caller's buffer is read and discarded (the child never blocks on a
 * full pipe).
 *
 * Must never: leave a zombie or a running child behind, or inherit the
 * agent's descriptors into the child (everything is O_CLOEXEC).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define PROC_MAX_ARGS 16
#define PROC_MAX_ENV 8
#define PROC_MAX_ENV_TOTAL 256

extern char **environ;

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void trim_output(char *out)
{
	size_t n = strlen(out);

	while(n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) out[--n] = '\0';
}

char *agent__flatten(char *s)
{
	char *p;

	for(p = s; p && *p; p++){
		if(*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
	}
	return s;
}

static int run(const char *file, char *const *argv, const char *const *env, int timeout_ms,
		char *out, size_t outlen)
{
	int pipefd[2], status = 0, rc = -1;
	size_t used = 0;
	uint64_t deadline = timeout_ms > 0 ? mono_ms() + (uint64_t)timeout_ms : 0;
	bool eof = false, timed_out = false;
	pid_t pid, w;
	char scratch[1024];

	char *envp[PROC_MAX_ENV_TOTAL + PROC_MAX_ENV + 1];
	size_t ne = 0, i;

	if(out && outlen) out[0] = '\0';
	/* the child's environment is built here: after fork() in a threaded
	 * process only async-signal-safe calls are allowed */
	for(i = 0; environ[i] && ne < PROC_MAX_ENV_TOTAL; i++){
		size_t j;
		bool overridden = false;
		for(j = 0; env && env[j] && j < PROC_MAX_ENV; j++){
			const char *eq = strchr(env[j], '=');
			size_t k = eq ? (size_t)(eq - env[j]) + 1 : strlen(env[j]);
			if(!strncmp(environ[i], env[j], k)) overridden = true;
		}
		if(!overridden) envp[ne++] = environ[i];
	}
	for(i = 0; env && env[i] && i < PROC_MAX_ENV; i++) envp[ne++] = (char *)env[i];
	envp[ne] = NULL;
	if(pipe2(pipefd, O_CLOEXEC) != 0) return -1;
	pid = fork();
	if(pid < 0){
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if(pid == 0){
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		struct sigaction sa;
		sigset_t none;

		setpgid(0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);   /* the agent's threads block signals */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigaction(SIGPIPE, &sa, NULL);
		if(devnull >= 0) dup2(devnull, 0);
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		execve(file, argv, envp);
		_exit(127);
	}
	setpgid(pid, pid);   /* also from the parent: no race with the kill below */
	close(pipefd[1]);

	while(!eof){
		struct pollfd p = { pipefd[0], POLLIN, 0 };
		int wait_ms = -1;
		ssize_t n;

		if(deadline){
			uint64_t now = mono_ms();
			if(now >= deadline){
				timed_out = true;
				break;
			}
			wait_ms = (int)(deadline - now);
		}
		n = poll(&p, 1, wait_ms);
		if(n < 0){
			if(errno == EINTR) continue;
			break;
		}
		if(n == 0) continue;
		n = read(pipefd[0], scratch, sizeof(scratch));
		if(n < 0){
			if(errno == EINTR) continue;
			break;
		}
		if(n == 0){
			eof = true;
			break;
		}
		if(out && used + 1 < outlen){
			size_t take = (size_t)n < outlen - 1 - used ? (size_t)n : outlen - 1 - used;
			memcpy(out + used, scratch, take);
			used += take;
			out[used] = '\0';
		}
	}
	close(pipefd[0]);
	if(!eof) kill(-pid, SIGKILL);
	/* the output closed: wait for the exit, still bounded by the deadline */
	for(;;){
		w = waitpid(pid, &status, deadline && !timed_out ? WNOHANG : 0);
		if(w == pid) break;
		if(w < 0 && errno != EINTR) break;
		if(w == 0){
			if(mono_ms() >= deadline){
				timed_out = true;
				kill(-pid, SIGKILL);
				continue;
			}
			usleep(5000);
		}
	}
	if(w == pid){
		if(timed_out) rc = -2;
		else if(WIFEXITED(status)) rc = WEXITSTATUS(status);
		else if(WIFSIGNALED(status)) rc = 128 + WTERMSIG(status);
	}
	/* a daemonised grandchild keeping the group alive is not our business,
	 * but make sure nothing of a timed-out command survives */
	if(timed_out) kill(-pid, SIGKILL);
	if(out) trim_output(out);
	return rc;
}

int agent__run_shell(const char *command, const char *const *args, const char *const *env,
		int timeout_ms, char *out, size_t outlen)
{
	char *argv[PROC_MAX_ARGS + 5];
	size_t n = 0, i;

	if(!command) return -1;
	argv[n++] = (char *)"sh";
	argv[n++] = (char *)"-c";
	argv[n++] = (char *)command;
	argv[n++] = (char *)"fleetmq-agent";   /* $0 */
	for(i = 0; args && args[i] && i < PROC_MAX_ARGS; i++) argv[n++] = (char *)args[i];
	argv[n] = NULL;
	return run("/bin/sh", argv, env, timeout_ms, out, outlen);
}

int agent__run_argv(const char *const *argv, int timeout_ms, char *out, size_t outlen)
{
	if(!argv || !argv[0]) return -1;
	return run(argv[0], (char *const *)argv, NULL, timeout_ms, out, outlen);
}
