//! `completions SHELL` and `man`, the subcommands every binary has for packagers: a shell
//! completion script or a roff man page, generated from the binary's own clap definition so
//! that neither can drift from the flags. Neither needs a configuration, PostgreSQL or Redis.

use clap::{Command, CommandFactory};
use clap_mangen::Man;
use clap_mangen::roff::Roff;
use std::io::Write;

/// The packaging subcommands: a binary flattens them into its subcommand enum, last, or takes
/// them as its only subcommands (`notify`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Packaging {
    /// Print the completion script for SHELL to standard output.
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
    /// Print the man page (roff) to standard output; `man -l -` shows it from a pipe.
    Man,
}

impl Packaging {
    /// The text this subcommand prints for the binary `bin` (its `CARGO_BIN_NAME`), whose
    /// command line `C` parses.
    pub fn render<C: CommandFactory>(&self, bin: &'static str) -> String {
        match self {
            Packaging::Completions { shell } => completions(C::command(), bin, *shell),
            Packaging::Man => man_page(C::command(), bin),
        }
    }
}

/// The shells completion scripts are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// The completion script of `cmd`, installed as the binary `bin`, for `shell`.
pub fn completions(cmd: Command, bin: &'static str, shell: Shell) -> String {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = named(cmd, bin);
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut cmd, bin, &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => fix_bash_hyphenated_name(script, bin),
        Shell::Zsh | Shell::Fish => script,
    }
}

/// clap_complete's bash script (4.6.12) spells the state of a hyphenated binary's subcommand
/// one way where it walks the words (`queue__work__subcmd__failed`) and another in the arms
/// that complete it (`queue__subcmd__work__subcmd__failed`), so nothing after a subcommand
/// of `queue-work` or `items-listen` ever completed
/// (<https://github.com/clap-rs/clap/issues/6421>). The arms are respelled as the walk spells
/// them; once clap_complete is fixed there is nothing left to replace.
fn fix_bash_hyphenated_name(script: String, bin: &str) -> String {
    if !bin.contains('-') {
        return script;
    }
    let arm = format!("{}__subcmd__", bin.replace('-', "__subcmd__"));
    let walk = format!("{}__subcmd__", bin.replace('-', "__"));
    script.replace(&arm, &walk)
}

/// The man page (roff, section 1) of `cmd`, installed as the binary `bin`.
///
/// One page per binary, every subcommand in it (`queue-work failed retry` too): clap_mangen's
/// own page would point to a page per subcommand (`queue-work-failed(1)`), which nobody
/// installs from `man` printing one page.
pub fn man_page(cmd: Command, bin: &'static str) -> String {
    // `help` gets no section: the page is the help.
    let mut cmd = named(cmd, bin).disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone());
    // `.TH` first, as in every man page; the apostrophe string clap_mangen defines at the top
    // of each piece it renders is defined once, after it (`.TH` holds no apostrophe). Written
    // here because clap_mangen leaves the empty date unquoted, which shifts the fields after it.
    let version = cmd.get_version().unwrap_or_default();
    let mut page = format!(".TH {bin} 1 \"\" \"{bin} {version}\" \"inventory-broadcast\"\n");
    page.push_str(&Roff::new().render());
    page.push_str(&section(&man, Man::render_name_section, false));
    page.push_str(&section(&man, Man::render_synopsis_section, false));
    page.push_str(&section(&man, Man::render_description_section, false));
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.push_str(&section(&man, Man::render_options_section, false));
    }
    if cmd.has_subcommands() {
        page.push_str(".SH SUBCOMMANDS\n");
        for sub in visible_subcommands(&cmd) {
            subcommand_sections(sub, &mut page);
        }
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        page.push_str(&section(&man, Man::render_extra_section, false));
    }
    if cmd.get_version().is_some() {
        page.push_str(&section(&man, Man::render_version_section, false));
    }
    page
}

/// `cmd` under the name it is installed as (the derive default is the package's name).
fn named(cmd: Command, bin: &'static str) -> Command {
    cmd.name(bin).bin_name(bin).display_name(bin)
}

fn visible_subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// Appends a `.SS` part for `sub` (description, synopsis, its own options), then one for each
/// of its subcommands. The global flags are left to the page's OPTIONS, said once there, and
/// -h/--help, which every subcommand has, to nowhere.
fn subcommand_sections(sub: &Command, page: &mut String) {
    let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
    page.push_str(&format!(".SS \"{name}\"\n"));
    let own = sub.clone().mut_args(|a| {
        let said_elsewhere = a.is_global_set() || a.get_id() == "help";
        if said_elsewhere { a.hide(true) } else { a }
    });
    let man = Man::new(own.clone());
    page.push_str(&section(&man, Man::render_description_section, true));
    page.push_str(".PP\n");
    page.push_str(&section(&man, Man::render_synopsis_section, true));
    if own.get_arguments().any(|a| !a.is_hide_set()) {
        page.push_str(&section(&man, Man::render_options_section, true));
    }
    for nested in visible_subcommands(sub) {
        subcommand_sections(nested, page);
    }
}

/// One piece of clap_mangen's page without the preamble it starts with and, when `nested`
/// (inside a subcommand's `.SS`), without its `.SH` heading.
fn section(
    man: &Man,
    render: fn(&Man, &mut dyn Write) -> std::io::Result<()>,
    nested: bool,
) -> String {
    let mut out = Vec::new();
    render(man, &mut out).expect("writing to a Vec cannot fail");
    let text = String::from_utf8_lossy(&out);
    let preamble = Roff::new().render();
    let text = text.strip_prefix(preamble.as_str()).unwrap_or(&text);
    text.lines()
        .filter(|line| !(nested && line.starts_with(".SH ")))
        .flat_map(|line| [line, "\n"])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    #[command(version, about = "A tool.", after_help = "Example:\n  tool go")]
    struct Tool {
        /// Say more.
        #[arg(short, long, global = true)]
        verbose: bool,
        #[command(subcommand)]
        command: Option<Sub>,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        /// Go somewhere.
        Go {
            /// Where to.
            #[arg(long, value_name = "PLACE")]
            to: Option<String>,
            #[command(subcommand)]
            how: Option<How>,
        },
        #[command(flatten)]
        Packaging(Packaging),
    }

    #[derive(clap::Subcommand)]
    enum How {
        /// On foot, at WALK's pace.
        Walk,
    }

    #[test]
    fn man_page_starts_with_th_and_has_every_subcommand_once() {
        let page = Packaging::Man.render::<Tool>("tool");
        let version = env!("CARGO_PKG_VERSION");
        let title = format!(".TH tool 1 \"\" \"tool {version}\" \"inventory-broadcast\"\n");
        assert!(page.starts_with(&title), "{page}");
        assert_eq!(page.matches(".TH ").count(), 1, "{page}");
        assert_eq!(page.matches(".ie \\n(.g .ds Aq").count(), 1, "{page}");
        for sub in ["tool go", "tool go walk", "tool completions", "tool man"] {
            assert!(page.contains(&format!(".SS \"{sub}\"\n")), "{sub}: {page}");
        }
        assert!(!page.contains("tool help"), "{page}");
        // The global flag is described once, at the top; --to in the go part.
        assert_eq!(page.matches("Say more").count(), 1, "{page}");
        assert!(page.contains("Where to"), "{page}");
        // The apostrophe of "WALK's" goes through the string defined after .TH.
        assert!(page.contains("WALK\\*(Aqs"), "{page}");
        assert!(
            page.contains(".SH EXTRA\n") && page.contains(".SH VERSION\n"),
            "{page}"
        );
    }

    #[test]
    fn bash_arms_of_a_hyphenated_binary_are_spelled_as_its_walk() {
        let bash = Packaging::Completions { shell: Shell::Bash }.render::<Tool>("my-tool");
        assert!(
            bash.contains("cmd=\"my__tool__subcmd__go__subcmd__walk\""),
            "{bash}"
        );
        assert!(
            bash.contains("\n        my__tool__subcmd__go__subcmd__walk)\n"),
            "{bash}"
        );
        assert!(!bash.contains("my__subcmd__tool"), "{bash}");
    }

    #[test]
    fn completions_use_the_installed_name() {
        let bash = Packaging::Completions { shell: Shell::Bash }.render::<Tool>("tool");
        assert!(bash.contains("complete -F _tool"), "{bash}");
        let zsh = Packaging::Completions { shell: Shell::Zsh }.render::<Tool>("tool");
        assert!(zsh.starts_with("#compdef tool"), "{zsh}");
        let fish = Packaging::Completions { shell: Shell::Fish }.render::<Tool>("tool");
        assert!(fish.contains("complete -c tool"), "{fish}");
        for script in [bash, zsh, fish] {
            assert!(
                script.contains("walk") && script.contains("completions"),
                "{script}"
            );
        }
    }
}
