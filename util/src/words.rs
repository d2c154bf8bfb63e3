//! [`word_enum!`]: an enum whose values are words (an architecture, an accelerator, a verdict), with
//! `as_str`, `ALL`, `Display` and a `FromStr` whose error names the unknown word and the known ones.

/// Declares `enum Name, "what it is" { Variant = "word", … }` with `as_str`, `ALL`, `Display` and
/// `FromStr`; more derives and attributes go on the enum and its variants as usual.
#[macro_export]
macro_rules! word_enum {
    ($(#[$m:meta])* $vis:vis enum $name:ident, $what:literal {
        $($(#[$vm:meta])* $variant:ident = $word:literal),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?} (expected {})",
                        $what,
                        [$($word),+].join(" or ")
                    )),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    word_enum! {
        enum Colour, "colour" { Red = "red", Green = "green" }
    }

    #[test]
    fn words_round_trip_and_unknown_ones_are_named() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>(), Ok(*c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(
            "blue".parse::<Colour>().unwrap_err(),
            "unknown colour \"blue\" (expected red or green)"
        );
    }
}
