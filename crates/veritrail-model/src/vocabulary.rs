//! The closed vocabularies of the event schema: actor types, outcomes, channels,
//! sensitivity labels and purpose categories.

/// Declares a fieldless enum spelled as fixed strings in JSON, with `ALL`, `as_str` and `parse`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The JSON spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// Parses the JSON spelling (exact, case-sensitive).
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// `actor.type`: what kind of principal acted. Defaults to `user`.
    pub enum ActorType {
        /// A human user.
        User => "user",
        /// A service or machine account.
        Service => "service",
        /// An API key.
        ApiKey => "api_key",
        /// An AI agent acting autonomously or for someone (see `metadata.on_behalf_of`).
        AiAgent => "ai_agent",
        /// The system itself (schedulers, Veritrail's self-audit).
        System => "system",
        /// An unauthenticated party.
        Anonymous => "anonymous",
    }
}

string_enum! {
    /// `outcome`: how the action ended. Defaults to `success`.
    pub enum Outcome {
        /// The action completed.
        Success => "success",
        /// The action was attempted and failed.
        Failure => "failure",
        /// The action was refused by an access-control decision.
        Denied => "denied",
    }
}

string_enum! {
    /// `context.channel`: through what the action came.
    pub enum Channel {
        /// An interactive user interface.
        Ui => "ui",
        /// An API call.
        Api => "api",
        /// An automated workflow.
        Workflow => "workflow",
        /// The system itself.
        System => "system",
    }
}

string_enum! {
    /// `sensitivity`: data classes the event touches. Declared in alphabetical order, which is
    /// also the order they are stored in.
    pub enum Sensitivity {
        /// Confidential business data.
        Confidential => "confidential",
        /// Payment card data (PCI DSS).
        Pci => "pci",
        /// Protected health information (HIPAA).
        Phi => "phi",
        /// Personally identifiable information (GDPR personal data).
        Pii => "pii",
        /// Secrets (credentials, keys).
        Secret => "secret",
    }
}

string_enum! {
    /// `metadata.purpose_category` and `metadata.disclosure.purpose_category`: why data was
    /// used or disclosed, as a closed vocabulary so that reports can include or exclude
    /// mechanically (COMPLIANCE.md §11.4, §9.3).
    ///
    /// The first eleven are the HIPAA §164.528(a)(1)(i)–(ix) exceptions (disclosures that are
    /// *not* listed in an accounting of disclosures); the §164.512 purposes after them are
    /// accountable; the rest are GDPR processing purposes (Art. 5(1)(b), 15(1)(a), 30(1)(b)).
    pub enum PurposeCategory {
        /// HIPAA (a)(1)(i): treatment.
        Treatment => "treatment",
        /// HIPAA (a)(1)(i): payment.
        Payment => "payment",
        /// HIPAA (a)(1)(i): health-care operations.
        Operations => "operations",
        /// HIPAA (a)(1)(ii): to the individual.
        ToIndividual => "to_individual",
        /// HIPAA (a)(1)(iii): incident to an otherwise permitted use or disclosure.
        Incidental => "incidental",
        /// HIPAA (a)(1)(iv): pursuant to an authorization (§164.508).
        Authorization => "authorization",
        /// HIPAA (a)(1)(v): facility directory, persons involved in care, notification (§164.510).
        DirectoryOrInvolved => "directory_or_involved",
        /// HIPAA (a)(1)(vi): national security or intelligence (§164.512(k)(2)).
        NationalSecurity => "national_security",
        /// HIPAA (a)(1)(vii): correctional institutions, law-enforcement custody (§164.512(k)(5)).
        CorrectionalCustody => "correctional_custody",
        /// HIPAA (a)(1)(viii): part of a limited data set (§164.514(e)).
        LimitedDataSet => "limited_data_set",
        /// HIPAA (a)(1)(ix): before the compliance date.
        PreCompliance => "pre_compliance",
        /// HIPAA §164.512(a): required by law.
        RequiredByLaw => "required_by_law",
        /// HIPAA §164.512(b): public-health activities.
        PublicHealth => "public_health",
        /// HIPAA §164.512(c): victims of abuse, neglect or domestic violence.
        AbuseNeglect => "abuse_neglect",
        /// HIPAA §164.512(d): health-oversight activities.
        HealthOversight => "health_oversight",
        /// HIPAA §164.512(e): judicial and administrative proceedings.
        JudicialProceeding => "judicial_proceeding",
        /// HIPAA §164.512(f): law-enforcement purposes.
        LawEnforcement => "law_enforcement",
        /// HIPAA §164.512(g): coroners, medical examiners, funeral directors.
        Decedents => "decedents",
        /// HIPAA §164.512(h): organ, eye or tissue donation.
        OrganDonation => "organ_donation",
        /// HIPAA §164.512(i) research; also GDPR Art. 89 scientific research.
        Research => "research",
        /// HIPAA §164.512(j): averting a serious threat to health or safety.
        SeriousThreat => "serious_threat",
        /// HIPAA §164.512(k) other than (2) and (5): specialized government functions.
        SpecializedGovernment => "specialized_government",
        /// HIPAA §164.512(l): workers' compensation.
        WorkersCompensation => "workers_compensation",
        /// GDPR: providing the service the data subject asked for (contract performance).
        ServiceDelivery => "service_delivery",
        /// GDPR: customer support.
        CustomerSupport => "customer_support",
        /// GDPR: account administration.
        AccountManagement => "account_management",
        /// GDPR: billing and invoicing.
        Billing => "billing",
        /// GDPR: information security, including audit logging itself.
        Security => "security",
        /// GDPR: fraud prevention.
        FraudPrevention => "fraud_prevention",
        /// GDPR: compliance with a legal obligation (Art. 6(1)(c), 17(3)(b)).
        LegalObligation => "legal_obligation",
        /// GDPR: establishment, exercise or defence of legal claims (Art. 17(3)(e)).
        LegalClaims => "legal_claims",
        /// GDPR: marketing.
        Marketing => "marketing",
        /// GDPR: analytics and statistics (Art. 89).
        Analytics => "analytics",
        /// GDPR: product improvement and development.
        ProductImprovement => "product_improvement",
        /// GDPR: employment and human-resources administration.
        HumanResources => "human_resources",
        /// GDPR: archiving in the public interest (Art. 89).
        Archiving => "archiving",
        /// Anything else; explain in `reason`.
        Other => "other",
    }
}

impl PurposeCategory {
    /// True for the HIPAA §164.528(a)(1)(i)–(ix) exceptions: disclosures for these purposes
    /// are left out of an accounting of disclosures.
    pub fn is_hipaa_accounting_exception(self) -> bool {
        matches!(
            self,
            PurposeCategory::Treatment
                | PurposeCategory::Payment
                | PurposeCategory::Operations
                | PurposeCategory::ToIndividual
                | PurposeCategory::Incidental
                | PurposeCategory::Authorization
                | PurposeCategory::DirectoryOrInvolved
                | PurposeCategory::NationalSecurity
                | PurposeCategory::CorrectionalCustody
                | PurposeCategory::LimitedDataSet
                | PurposeCategory::PreCompliance
        )
    }
}
