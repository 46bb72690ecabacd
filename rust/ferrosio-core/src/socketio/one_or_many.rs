//! A list that is almost always one item long (a connection's namespaces, a socket's rooms):
//! the one item is kept inline, so the common case costs no heap allocation of its own (each
//! is memory per idle connection).

/// A list of `T` in insertion order; one item inline, more in a `Vec`.
#[derive(Debug)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(item) => std::slice::from_ref(item),
            OneOrMany::Many(items) => items,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    pub fn push(&mut self, item: T) {
        match self {
            OneOrMany::Many(items) if items.capacity() == 0 => *self = OneOrMany::One(item),
            OneOrMany::Many(items) => items.push(item),
            OneOrMany::One(_) => {
                if let OneOrMany::One(first) = std::mem::take(self) {
                    *self = OneOrMany::Many(vec![first, item]);
                }
            }
        }
    }

    /// Removes the item at `index` (the last one takes its place, as `Vec::swap_remove`).
    /// Panics if `index` is out of bounds.
    pub fn swap_remove(&mut self, index: usize) -> T {
        match self {
            OneOrMany::Many(items) => items.swap_remove(index),
            OneOrMany::One(_) => {
                assert_eq!(index, 0, "index out of bounds");
                match std::mem::take(self) {
                    OneOrMany::One(item) => item,
                    OneOrMany::Many(_) => unreachable!(),
                }
            }
        }
    }

    /// Keeps the items `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match self {
            OneOrMany::One(item) => {
                if !keep(item) {
                    *self = OneOrMany::default();
                }
            }
            OneOrMany::Many(items) => items.retain(keep),
        }
    }
}

impl<T> IntoIterator for OneOrMany<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            OneOrMany::One(item) => vec![item].into_iter(),
            OneOrMany::Many(items) => items.into_iter(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OneOrMany;

    #[test]
    fn one_item_is_inline_and_more_go_to_a_vec_in_order() {
        let mut l = OneOrMany::default();
        assert!(l.is_empty());
        l.push(1);
        assert!(matches!(l, OneOrMany::One(1)));
        l.push(2);
        l.push(3);
        assert_eq!(l.as_slice(), [1, 2, 3]);
        l.retain(|x| *x != 2);
        assert_eq!(l.as_slice(), [1, 3]);
        assert_eq!(l.swap_remove(0), 1);
        assert_eq!(l.as_slice(), [3]);
        assert_eq!(l.into_iter().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn removing_the_one_item_leaves_it_empty() {
        let mut l = OneOrMany::default();
        l.push("a");
        assert_eq!(l.swap_remove(0), "a");
        assert!(l.is_empty());
        l.push("b");
        l.retain(|_| false);
        assert!(l.is_empty());
        assert_eq!(l.len(), 0);
    }
}
