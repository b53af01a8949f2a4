//! A Lab 1 call as it leaves the page: the `lock` or `unlock` command of one client, tagged so
//! that its answer can be matched. The card, the keyboard (through `State::call`) and the demo
//! all build it here. Pure; it imports only `shared`.

use shared::{Command, Op};

/// `op` on `lock` by `client`, tagged `tag`.
pub fn command(client: u32, op: Op, lock: String, tag: String) -> Command {
    let tag = Some(tag);
    match op {
        Op::Lock => Command::Lock { client, lock, tag },
        Op::Unlock => Command::Unlock { client, lock, tag },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_op_becomes_its_command_with_client_lock_and_tag() {
        assert_eq!(
            command(2, Op::Lock, "x".into(), "ui-1".into()),
            Command::Lock {
                client: 2,
                lock: "x".into(),
                tag: Some("ui-1".into())
            }
        );
        assert_eq!(
            command(3, Op::Unlock, "y".into(), "key-2".into()),
            Command::Unlock {
                client: 3,
                lock: "y".into(),
                tag: Some("key-2".into())
            }
        );
    }
}
