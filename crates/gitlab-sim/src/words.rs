//! Vocabulary for generated content. Names and messages deliberately include non-ASCII text.

pub const FIRST_NAMES: &[&str] = &[
    "Amélie",
    "Bjørn",
    "Chidi",
    "Dağhan",
    "Eun-ji",
    "Farrukh",
    "Giedrė",
    "Hamid",
    "Inès",
    "Jarosław",
    "Kaito",
    "Liên",
    "Mateus",
    "Nkechi",
    "Oksana",
    "Priya",
    "Quentin",
    "Rūta",
    "Søren",
    "Tomás",
    "Uxía",
    "Vikram",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoë",
];

pub const LAST_NAMES: &[&str] = &[
    "Ábrahám",
    "Brzęczyszczykiewicz",
    "Castaño",
    "Dubois",
    "Eriksson",
    "Fujimoto",
    "García",
    "Hütter",
    "Ivanova",
    "Jovanović",
    "Kowalczyk",
    "Lindqvist",
    "Müller",
    "Nakamura",
    "O'Connell",
    "Petrović",
    "Quispe",
    "Rossi",
    "Şahin",
    "Tanaka",
    "Ueda",
    "Vasquez",
    "Wójcik",
    "Xu",
    "Yılmaz",
    "Zhang",
];

pub const GROUP_NAMES: &[&str] = &["Northwind Labs", "Kōan Systems", "Blue Heron", "Ærø Robotics", "Quokka Finance", "Meridian Health"];

pub const SUBGROUP_NAMES: &[&str] =
    &["Platform", "Payments", "Mobile", "Data", "Infrastructure", "Frontend", "Security", "Growth", "Tooling", "Research"];

pub const PROJECT_NAMES: &[&str] = &[
    "api-gateway",
    "billing-service",
    "web-frontend",
    "infra-terraform",
    "docs",
    "mobile-app",
    "data-pipeline",
    "auth-service",
    "search-indexer",
    "notifications",
    "ledger",
    "design-system",
    "ml-experiments",
    "edge-proxy",
    "admin-console",
    "event-bus",
    "reporting",
    "feature-flags",
];

pub const VERBS: &[&str] = &["Fix", "Add", "Refactor", "Remove", "Update", "Improve", "Document", "Rename", "Optimize", "Revert"];

pub const OBJECTS: &[&str] = &[
    "pagination in list endpoint",
    "retry logic for webhook sender",
    "null check in parser",
    "naïve timezone handling",
    "café menu rendering",
    "cache invalidation on merge",
    "login rate limiter",
    "Dockerfile base image",
    "flaky integration test",
    "README typos",
    "support for 日本語 branch names",
    "metrics for queue depth",
    "migration for accounts table",
    "CSV export encoding (UTF-8 BOM)",
    "emoji 🚀 in release notes",
    "config loading order",
    "deadlock in worker pool",
    "Straße address formatting",
    "dependency versions",
];

pub const FILES: &[&str] = &[
    "src/main.rs",
    "src/lib.rs",
    "README.md",
    "Cargo.toml",
    "app/models/user.rb",
    "lib/parser.ts",
    "docs/setup.md",
    ".gitlab-ci.yml",
    "config/settings.yml",
    "web/index.html",
    "tests/api_test.py",
];

pub const LABELS: &[(&str, &str)] = &[
    ("bug", "#d9534f"),
    ("feature", "#428bca"),
    ("documentation", "#5cb85c"),
    ("security", "#8e44ad"),
    ("performance", "#f0ad4e"),
    ("tech-debt", "#7f8c8d"),
    ("priority::high", "#c0392b"),
];

pub const PARAGRAPHS: &[&str] = &[
    "The previous implementation assumed every response fits in one page, which breaks on large projects.",
    "Ce changement corrige le problème signalé par l'équipe support la semaine dernière.",
    "Das Verhalten war inkonsistent, wenn der Zeitstempel keine Zeitzone enthielt.",
    "この変更により、キャッシュの無効化が正しく行われるようになります。",
    "Measured on staging: p95 latency drops from 840 ms to 310 ms with the new index.",
    "See the discussion in the linked issue for the alternatives we considered and rejected.",
];

pub const COMMENTS: &[&str] = &[
    "LGTM 👍",
    "Could we add a test for the empty case?",
    "Nit: this name is a bit misleading.",
    "Ça marche chez moi.",
    "I think this also needs a migration.",
    "Rebased on the default branch.",
    "Thanks! Merging once the pipeline is green.",
    "Is this still relevant after the refactor?",
];

pub const SYSTEM_NOTES: &[&str] = &[
    "changed the description",
    "added ~bug label",
    "assigned to @{user}",
    "marked this merge request as ready",
    "mentioned in commit {sha}",
    "changed title from **Draft: x** to **x**",
    "requested review from @{user}",
];
