//! Interned names (nodes, lock names, reasons) so a stored event is a few machine words.
//!
//! The table only grows, and the same text always gets the same [`Sym`], so sharing it between
//! snapshots of the store (interior mutability) never changes what an older snapshot means.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// A name stored once in [`Symbols`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Sym(u32);

#[derive(Default)]
struct Table {
    names: Vec<Rc<str>>,
    ids: HashMap<Rc<str>, u32>,
}

/// The shared, append-only name table.
#[derive(Clone, Default)]
pub struct Symbols(Rc<RefCell<Table>>);

impl Symbols {
    pub fn intern(&self, name: &str) -> Sym {
        let mut t = self.0.borrow_mut();
        if let Some(id) = t.ids.get(name) {
            return Sym(*id);
        }
        let id = t.names.len() as u32;
        let rc: Rc<str> = Rc::from(name);
        t.names.push(rc.clone());
        t.ids.insert(rc, id);
        Sym(id)
    }

    /// The text of `sym` (empty for a symbol of another table, which cannot happen in the page).
    pub fn name(&self, sym: Sym) -> Rc<str> {
        self.0
            .borrow()
            .names
            .get(sym.0 as usize)
            .cloned()
            .unwrap_or_else(|| Rc::from(""))
    }
}

impl PartialEq for Symbols {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Symbols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbols({} names)", self.0.borrow().names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_symbol_and_clones_share() {
        let a = Symbols::default();
        let b = a.clone();
        let s1 = a.intern("s1");
        assert_eq!(b.intern("s1"), s1);
        assert_ne!(a.intern("s2"), s1);
        assert_eq!(&*b.name(s1), "s1");
    }
}
