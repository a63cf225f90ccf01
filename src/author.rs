//! Who makes a change, as the audit log records it: one rule for every command that writes (`meridian
//! region`, `drill`, `config apply`, `up`), documented in docs/operations.md:
//!
//! `$MERIDIAN_AUTHOR` as given; else `USER@HOST`, where USER is the operating system user — `$USER`, else
//! the name of the process's real uid in /etc/passwd, else `uid-N` — and HOST the kernel's hostname
//! (/proc/sys/kernel/hostname; `@HOST` is left out if it cannot be read).

/// The author of the changes this process makes.
pub(crate) fn author() -> String {
    let env = |name: &str| std::env::var(name).ok();
    rule(
        env("MERIDIAN_AUTHOR"),
        || {
            os_user(env("USER"), real_uid(), || {
                std::fs::read_to_string("/etc/passwd").ok()
            })
        },
        || std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
    )
}

/// The rule, over its sources: `meridian_author` as given, else `user()@hostname()` (the user alone when
/// the hostname is unknown). Blank values count as absent.
fn rule(
    meridian_author: Option<String>,
    user: impl FnOnce() -> String,
    hostname: impl FnOnce() -> Option<String>,
) -> String {
    if let Some(author) = present(meridian_author) {
        return author;
    }
    let user = user();
    match present(hostname()) {
        Some(host) => format!("{user}@{host}"),
        None => user,
    }
}

/// The operating system user: `user_var` (`$USER`), else the name of `uid` in `passwd` (the text of
/// /etc/passwd), else `uid-N`.
fn os_user(user_var: Option<String>, uid: Option<u32>, passwd: impl FnOnce() -> Option<String>) -> String {
    if let Some(user) = present(user_var) {
        return user;
    }
    let Some(uid) = uid else {
        // No /proc/self/status: not Linux as Meridian knows it. Still never "unknown@...".
        return "uid-unknown".to_owned();
    };
    passwd()
        .and_then(|text| passwd_name(&text, uid))
        .unwrap_or_else(|| format!("uid-{uid}"))
}

/// The name of `uid` in /etc/passwd's text (`name:password:uid:gid:gecos:home:shell` per line).
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?.trim();
        let _password = fields.next()?;
        let id: u32 = fields.next()?.trim().parse().ok()?;
        (id == uid && !name.is_empty() && !name.starts_with('#')).then(|| name.to_owned())
    })
}

/// The process's real uid: the first number of the `Uid:` line of /proc/self/status (real, effective,
/// saved, filesystem).
fn real_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn present(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          # a comment\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n";

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    fn never<T>() -> T {
        panic!("not consulted when $MERIDIAN_AUTHOR is set")
    }

    #[test]
    fn meridian_author_is_taken_as_given() {
        assert_eq!(rule(some("release-bot"), never, never), "release-bot");
        assert_eq!(rule(some(" carol@laptop "), never, never), "carol@laptop");
    }

    #[test]
    fn otherwise_the_os_user_at_the_kernel_hostname() {
        let user = || os_user(some("bob"), Some(1000), || some(PASSWD));
        assert_eq!(rule(None, user, || some("ops1\n")), "bob@ops1");
        // A blank $MERIDIAN_AUTHOR is no author.
        assert_eq!(rule(some("  "), user, || some("ops1")), "bob@ops1");
        // No hostname: the user alone.
        assert_eq!(rule(None, user, || None), "bob");
        assert_eq!(rule(None, user, || some("")), "bob");
    }

    #[test]
    fn without_user_the_real_uid_names_the_user() {
        assert_eq!(os_user(None, Some(1000), || some(PASSWD)), "alice");
        assert_eq!(os_user(some(""), Some(0), || some(PASSWD)), "root");
        assert_eq!(os_user(None, Some(4242), || some(PASSWD)), "uid-4242");
        assert_eq!(os_user(None, Some(1000), || None), "uid-1000");
        assert_eq!(os_user(None, None, || some(PASSWD)), "uid-unknown");
        let author = rule(None, || os_user(None, Some(4242), || None), || some("ops1"));
        assert_eq!(author, "uid-4242@ops1");
        assert!(!author.starts_with("unknown@"));
    }

    #[test]
    fn this_process_has_a_real_uid_and_an_author() {
        let uid = real_uid().expect("/proc/self/status has a Uid line");
        let user = os_user(None, Some(uid), || std::fs::read_to_string("/etc/passwd").ok());
        assert!(!user.is_empty() && !user.starts_with("unknown"), "{user}");
        assert!(!author().is_empty());
    }
}
